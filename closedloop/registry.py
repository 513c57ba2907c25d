"""Name -> class tables for the roles: neurons, spaces, optimizers, experiments, judges, and the
spiking neuron's front ends and cell models.

A new kind is one module in its role's package that decorates its class with
`@register("role", "name")`, written literally like that. A lookup imports only the module that
defines the kind: the packages' sources are scanned for the decorator, never imported whole, so a
run of a spiking cell never loads torch. Another package adds kinds through entry points, one
group per role (`closedloop.neurons`, `closedloop.spaces`, ...: name = "package.module:Class").
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
from importlib.metadata import entry_points
from pathlib import Path

# the order fixes each role's random stream (Protocol.role_seed): append, never reorder
ROLES = ("neuron", "space", "optimizer", "experiment", "judge", "front_end", "cell")
PACKAGES = {
    "neuron": "closedloop.neurons",
    "space": "closedloop.spaces",
    "optimizer": "closedloop.optimizers",
    "experiment": "closedloop.experiments",
    "judge": "closedloop.judges",
    "front_end": "closedloop.neurons.front_ends",
    "cell": "closedloop.neurons.cells",
}
ENTRY_POINT_GROUPS = {role: f"closedloop.{role}s" for role in ROLES}
_DECORATOR = re.compile(r'^@register\(\s*"(\w+)"\s*,\s*"([\w.-]+)"\s*\)', re.MULTILINE)
_TABLES: dict[str, dict[str, type]] = {role: {} for role in ROLES}
_INDEX: dict[str, dict[str, str]] = {}  # role -> kind name -> "module" or "module:Class" (entry point)


def register(role: str, name: str):
    """Class decorator: make `name` usable as `kind: name` in the `role` section of a protocol."""
    if role not in _TABLES:
        raise ValueError(f"unknown role {role!r}")

    def decorate(cls):
        previous = _TABLES[role].get(name)
        if previous is not None and previous is not cls:
            raise ValueError(f"{role} kind {name!r} registered twice ({previous} and {cls})")
        cls.kind = name
        _TABLES[role][name] = cls
        return cls

    return decorate


def index(role: str) -> dict[str, str]:
    """Where each kind of the role is defined, found without importing any kind's module."""
    if role not in _INDEX:
        found: dict[str, str] = {}
        package = PACKAGES[role]
        spec = importlib.util.find_spec(package)
        for folder in spec.submodule_search_locations or ():
            for source in sorted(Path(folder).glob("*.py")):
                if source.name.startswith("_"):
                    continue
                for declared_role, name in _DECORATOR.findall(source.read_text(encoding="utf-8")):
                    if declared_role == role:
                        found[name] = f"{package}.{source.stem}"
        for point in entry_points(group=ENTRY_POINT_GROUPS[role]):
            found.setdefault(point.name, point.value)
        _INDEX[role] = found
    return _INDEX[role]


def names(role: str) -> list[str]:
    return sorted(set(index(role)) | set(_TABLES[role]))


def lookup(role: str, name: str) -> type:
    """The class registered as `name`; KeyError with the closest names otherwise."""
    if name not in _TABLES[role]:
        where = index(role).get(name)
        if where is None:
            raise KeyError(unknown_message(name, names(role)))
        module, _, attribute = where.partition(":")
        loaded = importlib.import_module(module)
        if attribute:  # an entry point of another package: its class, registered under its entry name
            register(role, name)(getattr(loaded, attribute))
        if name not in _TABLES[role]:
            raise KeyError(f"{module} does not register {role} kind {name!r}")
    return _TABLES[role][name]


def unknown_message(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown kind {name!r}{hint} (one of: {', '.join(valid)})"
