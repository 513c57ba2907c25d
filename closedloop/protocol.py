"""The protocol file: YAML, validated whole before anything runs or is written.

A protocol names an experiment `kind` at its top level, one section per role that kind uses
(`neuron:`, `space:`, `optimizer:`), each with its own `kind`, and the experiment's own fields.
Every error is one line: the file, the field path, and what is expected there.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from closedloop import registry
from closedloop.component import KindOf
from closedloop.errors import ProtocolError, not_found, reason, shorten


class _Loader(yaml.SafeLoader):
    """YAML as editors read it (YAML 1.2 core schema): only true/false are booleans, so
    `polarity: on` or `answer: no` stay the words they are; a yes/no/on/off given to a true/false
    field still reads as true/false."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


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
    # None: the user gave this protocol, its `import:` fields may run code. A set: it came from a
    # log, and may import only the modules the user named again (resume --allow-import MODULE)
    allowed_imports: frozenset[str] | None = None
    directory: str = ""  # where relative paths in the protocol resolve: the folder of its file

    @property
    def seed(self) -> int:
        return self.settings.seed

    def role_seed(self, role: str) -> int:
        """Each role draws from its own stream, so adding noise to one does not shift another."""
        index = registry.ROLES.index(role)
        return int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])

    def build(self, role: str, **context):
        section = self.sections[role]
        self._check_imports(role, section.raw)
        try:
            return section.cls(section.config, self.role_seed(role), **context)
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"{self.source}: {role}: {exc}") from exc

    def _check_imports(self, role: str, raw: dict) -> None:
        """A log never runs code by itself: building a section that imports a module (any
        `import:` field, however deep) needs the module named by the user."""
        if self.allowed_imports is None:
            return
        for where, target in imports_in(raw, role):
            module = target.partition(":")[0]
            if not any(module == name or module.startswith(name + ".") for name in self.allowed_imports):
                raise ProtocolError(
                    f"{self.source}: {where}: imports {shorten(repr(target), 80)}; a log never runs code by "
                    f"itself: if you trust this module, name it: --allow-import {shorten(module, 60)}")


def imports_in(raw: Any, where: str) -> list[tuple[str, str]]:
    """(field path, 'package.module:factory') of every `import:` field inside a section."""
    found = []
    if isinstance(raw, dict):
        for key, value in raw.items():
            path = f"{where}.{key}"
            if key == "import":
                found.append((path, str(value)))
            else:
                found += imports_in(value, path)
    elif isinstance(raw, list):
        for k, value in enumerate(raw):
            found += imports_in(value, f"{where}[{k}]")
    return found


def load(path: str | Path, overrides: dict[str, Any] | None = None, allowed_imports=None) -> Protocol:
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(not_found(path, "protocol file"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read protocol file ({exc})") from exc
    return parse(text, str(path), overrides, allowed_imports, directory=path.resolve().parent)


# what a protocol may hold (docs/reliability.md): a protocol is a page of settings, never a data file
MAX_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_ALIASES = 100
MAX_NODES = 100_000


class _Limited(_Loader):
    """yaml.safe_load with limits on nesting, aliases and the size the aliases expand to, so that
    an alias bomb or a deeply nested document is refused at once instead of hanging the program."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth, self.aliases = 0, 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooLarge(f"more than {MAX_ALIASES} aliases (*name)")
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooLarge(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _TooLarge(Exception):
    pass


class _DuplicateKey(Exception):
    pass


def _check_unique_keys(node: yaml.MappingNode) -> None:
    """YAML lets a later key silently replace an earlier one (`generations: 2` ... `generations:
    500`); a protocol refuses that, naming the line."""
    seen = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
            if key.value in seen:
                mark = key.start_mark
                raise _DuplicateKey(f"line {mark.line + 1}, column {mark.column + 1}: duplicate key {key.value!r} "
                                    f"(YAML would keep only the last)")
            seen.add(key.value)


def _expanded_size(node, sizes: dict) -> int:
    """Nodes of the document with every alias expanded, counted without expanding them."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise _TooLarge("an alias refers to a value that contains it")
        return sizes[key]
    sizes[key] = None
    children = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        _check_unique_keys(node)
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        total += _expanded_size(child, sizes)
        if total > MAX_NODES:
            raise _TooLarge(f"more than {MAX_NODES} values once aliases are expanded")
    sizes[key] = total
    return total


def load_yaml(text: str, source: str = "<protocol>"):
    """yaml.safe_load within the limits above; ProtocolError (one line) for anything else."""
    if len(text) > MAX_BYTES:
        raise ProtocolError(f"{source}: {len(text)} characters; a protocol holds at most {MAX_BYTES}")
    loader = _Limited(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {})
        return loader.construct_document(node)
    except _TooLarge as exc:
        raise ProtocolError(f"{source}: refused: {exc}") from None
    except _DuplicateKey as exc:
        raise ProtocolError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProtocolError(f"{source}: {where}YAML syntax error: {shorten(problem, 120)}") from None
    except ValueError as exc:  # a value YAML can parse but Python refuses to build (a 5,000-digit integer)
        raise ProtocolError(f"{source}: refused: {reason(exc)}") from None
    finally:
        loader.dispose()


def parse(text: str, source: str = "<protocol>", overrides: dict[str, Any] | None = None,
          allowed_imports=None, directory: str | Path | None = None) -> Protocol:
    """A protocol from YAML text; relative paths in it resolve in `directory` (default: the
    working directory). `allowed_imports`: None for a protocol the user gave; for one read from a
    log, the modules the user allows it to import (see Protocol.allowed_imports)."""
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: expected a mapping of fields at the top level, got {_typename(data)}")
    for dotted, value in (overrides or {}).items():
        set_path(data, dotted, value)
    protocol = from_dict(data, source, None if overrides else text, directory)
    if allowed_imports is not None:
        protocol.allowed_imports = frozenset(allowed_imports)
    return protocol


def from_dict(data: dict, source: str, text: str | None = None, directory: str | Path | None = None) -> Protocol:
    data = dict(data)
    directory = str(Path(directory if directory is not None else os.getcwd()).resolve())
    kind = data.pop("kind", None)
    if kind is None:
        raise ProtocolError(f"{source}: kind: required field missing (one of: {', '.join(registry.names('experiment'))})")
    if not isinstance(kind, str):
        raise ProtocolError(f"{source}: kind: expected the name of a kind, got {_typename(kind)}")
    experiment_cls = _lookup(source, "experiment", kind, "kind")
    sections = {}
    for role in experiment_cls.roles:
        raw = data.pop(role, None)
        defaulted = raw is None
        if defaulted:
            raw = experiment_cls.default_section(role, sections)
            if raw is None:
                raise ProtocolError(f"{source}: {role}: required section missing")
        sections[role] = _section(source, role, raw, directory)
        sections[role].defaulted = defaulted
    settings = validate(source, "", experiment_cls.Config, data, directory)
    if text is None:
        given = {r: s.raw for r, s in sections.items() if not s.defaulted}
        text = yaml.safe_dump({"kind": kind, **given, **data}, sort_keys=False)
    return Protocol(source, text, kind, experiment_cls, settings, sections, directory=directory)


def _section(source: str, role: str, raw: Any, directory: str | None = None) -> Section:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{source}: {role}: expected a mapping with a 'kind', got {_typename(raw)}")
    body = dict(raw)
    kind = body.pop("kind", None)
    if kind is None:
        raise ProtocolError(f"{source}: {role}.kind: required field missing (one of: {', '.join(registry.names(role))})")
    if not isinstance(kind, str):
        raise ProtocolError(f"{source}: {role}.kind: expected the name of a kind, got {_typename(kind)}")
    cls = _lookup(source, role, kind, f"{role}.kind")
    return Section(cls, validate(source, role, cls.Config, body, directory), dict(raw))


def _lookup(source: str, role: str, kind: Any, where: str) -> type:
    try:
        return registry.lookup(role, str(kind))
    except KeyError as exc:
        raise ProtocolError(f"{source}: {where}: {exc.args[0]}") from None


def validate(source: str, prefix: str, model: type, body: dict, directory: str | Path | None = None):
    """The validated settings, or a ProtocolError of one line naming the field. Path fields
    (component.ProtocolPath) resolve in `directory`, the protocol file's folder."""
    _check_kinds(source, prefix, body)
    try:
        return model.model_validate(body, context={"protocol_dir": str(directory) if directory else None})
    except ValidationError as exc:
        raise ProtocolError(f"{source}: {_describe(exc.errors()[0], prefix, model, body, exc.errors())}") from None
    except (TypeError, KeyError, AttributeError, ArithmeticError) as exc:  # a validator met a shape it never expected
        raise ProtocolError(f"{source}: {prefix or '(top level)'}: malformed section ({reason(exc)})") from None


def _check_kinds(source: str, prefix: str, body: Any) -> None:
    """Every `kind:` names a kind: text, not a list or a mapping (nested sections included)."""
    if isinstance(body, dict):
        for key, value in body.items():
            where = f"{prefix}.{key}" if prefix else str(key)
            if key == "kind" and not isinstance(value, str):
                raise ProtocolError(f"{source}: {where}: expected the name of a kind, got {_typename(value)}")
            _check_kinds(source, where, value)


def _describe(error: dict, prefix: str, model: type, body: Any = None, errors: list | None = None) -> str:
    loc = [str(part) for part in error["loc"]]
    path = ".".join([p for p in [prefix, *loc] if p]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _field_names(model, error["loc"][:-1], body)
        # every unknown field beside this one, so a typo is named even when it is not the first
        unknown = [str(e["loc"][-1]) for e in errors or [error]
                   if e["type"] == "extra_forbidden" and e["loc"][:-1] == error["loc"][:-1]]
        if len(unknown) > 1:
            path = ".".join([p for p in [prefix, *loc[:-1]] if p]) or "(top level)"
            typos = [(name, difflib.get_close_matches(name, valid, n=1)) for name in unknown]
            hints = [f"did you mean {close[0]!r} for {name!r}?" for name, close in typos if close]
            return (f"{path}: unknown fields {', '.join(unknown)}; " + (" ".join(hints) + " " if hints else "")
                    + f"valid fields: {', '.join(valid)}")
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid fields: {', '.join(valid)}"
        return f"{path}: unknown field; {hint}"
    if kind == "missing":
        return f"{path}: required field missing"
    options = _choices(error)
    if options and isinstance(error.get("input"), str):
        close = difflib.get_close_matches(error["input"], options, n=1, cutoff=0.7)
        return (f"{path}: expected one of {', '.join(options)}, got {shorten(repr(error['input']), 60)}"
                + (f"; did you mean {close[0]!r}?" if close else ""))
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    named, _, rest = message.partition(": ")
    if kind == "value_error" and rest and named in _field_names(model, error["loc"], body):
        path, message = f"{path}.{named}" if path != "(top level)" else named, rest  # a model check naming its field
    if "input" in error and kind not in ("value_error", "assertion_error"):
        message += f", got {shorten(repr(error['input']), 60)}"
        if isinstance(error["input"], bool) and kind in ("string_type", "literal_error", "enum"):
            message += " (YAML reads true/false as a boolean: quote the word you meant)"
    return f"{path}: {message}"


def _choices(error: dict) -> list[str]:
    """The words a field takes, where pydantic's error lists them (a Literal) or hides them in a
    pattern of alternatives (`^(white|pink|tv)$`)."""
    context = error.get("ctx") or {}
    if error["type"] == "literal_error":
        return re.findall(r"'([^']*)'", str(context.get("expected", "")))
    if error["type"] == "string_pattern_mismatch":
        words = re.fullmatch(r"\^\(([\w.+-]+(?:\|[\w.+-]+)+)\)\$", str(context.get("pattern", "")))
        return words.group(1).split("|") if words else []
    return []


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
