"""Name -> class tables for the four roles and the experiment kinds.

A new neuron, space, optimizer or experiment is one new module in its package that decorates its
class with `@register(role, name)`; the packages import their modules on first lookup, so
neither the loop nor the protocol has to know the new name.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

ROLES = ("neuron", "space", "optimizer", "experiment", "judge")
_PACKAGES = {
    "neuron": "closedloop.neurons",
    "space": "closedloop.spaces",
    "optimizer": "closedloop.optimizers",
    "experiment": "closedloop.experiments",
    "judge": "closedloop.judges",
}
_TABLES: dict[str, dict[str, type]] = {role: {} for role in ROLES}
_loaded: set[str] = set()


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


def _load(role: str) -> None:
    if role in _loaded:
        return
    package = importlib.import_module(_PACKAGES[role])
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    _loaded.add(role)


def names(role: str) -> list[str]:
    _load(role)
    return sorted(_TABLES[role])


def lookup(role: str, name: str) -> type:
    """The class registered as `name`; KeyError with the closest names otherwise."""
    _load(role)
    try:
        return _TABLES[role][name]
    except KeyError:
        raise KeyError(unknown_message(name, names(role))) from None


def unknown_message(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown kind {name!r}{hint} (one of: {', '.join(valid)})"
