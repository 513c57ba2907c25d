"""The protocol file: YAML, validated whole before anything runs or is written.

A protocol names an experiment `kind` at its top level, one section per role that kind uses
(`neuron:`, `space:`, `optimizer:`), each with its own `kind`, and the experiment's own fields.
Every error is one line: the file, the field path, and what is expected there.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from closedloop import registry
from closedloop.component import KindOf
from closedloop.errors import ProtocolError


@dataclass
class Section:
    cls: type
    config: Any
    raw: dict
    defaulted: bool = False  # the protocol left it out; the experiment kind's default stands in


@dataclass
class Protocol:
    source: str
    text: str
    kind: str
    experiment_cls: type
    settings: Any
    sections: dict[str, Section] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.settings.seed

    def role_seed(self, role: str) -> int:
        """Each role draws from its own stream, so adding noise to one does not shift another."""
        index = registry.ROLES.index(role)
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])

    def build(self, role: str, **context):
        section = self.sections[role]
        try:
            return section.cls(section.config, self.role_seed(role), **context)
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"{self.source}: {role}: {exc}") from exc


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Protocol:
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"{path}: no such protocol file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read protocol file ({exc})") from exc
    return parse(text, str(path), overrides)


def parse(text: str, source: str = "<protocol>", overrides: dict[str, Any] | None = None) -> Protocol:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProtocolError(f"{source}: {where}YAML syntax error: {problem}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: expected a mapping of fields at the top level, got {_typename(data)}")
    for dotted, value in (overrides or {}).items():
        set_path(data, dotted, value)
    return from_dict(data, source, None if overrides else text)


def from_dict(data: dict, source: str, text: str | None = None) -> Protocol:
    data = dict(data)
    kind = data.pop("kind", None)
    if kind is None:
        raise ProtocolError(f"{source}: kind: required field missing (one of: {', '.join(registry.names('experiment'))})")
    experiment_cls = _lookup(source, "experiment", kind, "kind")
    sections = {}
    for role in experiment_cls.roles:
        raw = data.pop(role, None)
        defaulted = raw is None
        if defaulted:
            raw = experiment_cls.default_section(role, sections)
            if raw is None:
                raise ProtocolError(f"{source}: {role}: required section missing")
        sections[role] = _section(source, role, raw)
        sections[role].defaulted = defaulted
    settings = _validate(source, "", experiment_cls.Config, data)
    if text is None:
        given = {r: s.raw for r, s in sections.items() if not s.defaulted}
        text = yaml.safe_dump({"kind": kind, **given, **data}, sort_keys=False)
    return Protocol(source, text, kind, experiment_cls, settings, sections)


def _section(source: str, role: str, raw: Any) -> Section:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{source}: {role}: expected a mapping with a 'kind', got {_typename(raw)}")
    body = dict(raw)
    kind = body.pop("kind", None)
    if kind is None:
        raise ProtocolError(f"{source}: {role}.kind: required field missing (one of: {', '.join(registry.names(role))})")
    cls = _lookup(source, role, kind, f"{role}.kind")
    return Section(cls, _validate(source, role, cls.Config, body), dict(raw))


def _lookup(source: str, role: str, kind: Any, where: str) -> type:
    try:
        return registry.lookup(role, str(kind))
    except KeyError as exc:
        raise ProtocolError(f"{source}: {where}: {exc.args[0]}") from None


def _validate(source: str, prefix: str, model: type, body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ProtocolError(f"{source}: {_describe(exc.errors()[0], prefix, model, body)}") from None


def _describe(error: dict, prefix: str, model: type, body: Any = None) -> str:
    loc = [str(part) for part in error["loc"]]
    path = ".".join([p for p in [prefix, *loc] if p]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _field_names(model, error["loc"][:-1], body)
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid fields: {', '.join(valid)}"
        return f"{path}: unknown field; {hint}"
    if kind == "missing":
        return f"{path}: required field missing"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if "input" in error and kind not in ("value_error", "assertion_error"):
        message += f", got {error['input']!r}"
    return f"{path}: {message}"


def _field_names(model: type, loc: tuple, body: Any = None) -> list[str]:
    """The fields of the model at `loc`, following nested models and, for a field holding a kind
    of another role (component.KindOf), the kind that the input names."""
    for part in loc:
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            break
        body = body.get(part) if isinstance(body, dict) else None
        marker = next((m for m in info.metadata if isinstance(m, KindOf)), None)
        if marker is not None:
            try:
                model = marker.config_class(body if isinstance(body, dict) else {})
            except ValueError:
                break
            continue
        annotation = info.annotation
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")]
        if not nested:
            break
        model = nested[0]
    return sorted(getattr(model, "model_fields", {}))


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested mappings, creating mappings on the way (for sweeps and overrides)."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _typename(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )
