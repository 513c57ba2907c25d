"""The field reference (docs/reference.md, `closedloop fields`) and the JSON Schema of protocol
files (`closedloop schema`), both generated from the kinds' Config classes, so neither can drift
from the code.

A field's unit is its `json_schema_extra={"unit": ...}`, or the unit its description ends with
after a comma or colon ("correlation time, s", "audio: Hz") or starts with ("degrees, of ..."),
or its whole description when that is a unit ("mV"). No unit: a pure number.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from typing import Any

from closedloop import registry

ROLE_TITLES = {
    "experiment": "Experiments (the protocol's top-level `kind`)",
    "neuron": "Neurons (`neuron:`)",
    "front_end": "Front ends of the spiking neuron (`neuron.front_end:`)",
    "cell": "Cell models of the spiking neuron (`neuron.cell:`)",
    "space": "Stimulus spaces (`space:`)",
    "optimizer": "Optimizers (`optimizer:`)",
    "judge": "Judges (asked by the analyses, never by the search)",
}
ROLE_ORDER = ("experiment", "neuron", "front_end", "cell", "space", "optimizer", "judge")
UNITS = ("s", "ms", "us", "Hz", "kHz", "mV", "nA", "pA", "pF", "nS", "uS", "dB", "dB FS", "dB re full scale", "deg",
         "degrees", "pixels", "cycles/pixel", "cycles per pixel", "octaves", "semitones", "cents", "samples")
_PATTERN_CHOICES = re.compile(r"^\^\(([\w|.-]+)\)\$$")


# --- the kinds and their schemas ---------------------------------------------------------------

def kinds(role: str) -> dict[str, type]:
    """closedloop's own kinds of the role (not other packages' entry points), imported."""
    own = {name: where for name, where in registry.index(role).items() if ":" not in where}
    return {name: registry.lookup(role, name) for name in sorted(own)}


def config_of(cls) -> type | None:
    config = getattr(cls, "Config", None)
    return config if isinstance(config, type) and hasattr(config, "model_json_schema") else None


def model_schema(model: type, prefix: str) -> dict:
    """The model's JSON Schema with its $defs renamed under `prefix` (two kinds may both have a
    `NoiseSettings`), and defaults given by a factory filled in."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})
    names = {name: f"{prefix}.{name}" for name in defs}

    def rename(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
                node["$ref"] = f"#/$defs/{names[node['$ref'][8:]]}"
            for value in node.values():
                rename(value)
        elif isinstance(node, list):
            for value in node:
                rename(value)

    rename(schema)
    rename(defs)
    _fill_factory_defaults(model, schema)
    return {"schema": schema, "defs": {names[name]: value for name, value in defs.items()}}


def _fill_factory_defaults(model: type, schema: dict) -> None:
    from pydantic import TypeAdapter

    for name, info in model.model_fields.items():
        key = info.alias or name
        prop = schema.get("properties", {}).get(key)
        if prop is not None and "default" not in prop and info.default_factory is not None:
            value = info.get_default(call_default_factory=True)
            prop["default"] = TypeAdapter(Any).dump_python(value, mode="json")


# --- JSON Schema of a protocol file --------------------------------------------------------------

def json_schema() -> dict:
    """A JSON Schema (draft 2020-12) of protocol files, for editors' YAML support."""
    defs: dict[str, dict] = {}
    unions: dict[tuple, str] = {}

    def section(role: str, name: str, cls, tag: str = "kind", default: str | None = None) -> str:
        # the same kind is a different section where its tag differs or may be left out
        key = f"{role}.{name}" + ("" if tag == "kind" else f"({tag})") + ("(default)" if name == default else "")
        if key in defs:
            return key
        config = config_of(cls)
        built = model_schema(config, key) if config else {"schema": {"type": "object", "properties": {}}, "defs": {}}
        schema = built["schema"]
        schema.pop("title", None)
        properties = schema.setdefault("properties", {})
        if tag not in properties:
            properties[tag] = {"const": name, "description": f"{role} kind"}
        else:
            properties[tag] = {**properties[tag], "const": name}
        required = set(schema.get("required", []))
        if name != default:
            required.add(tag)
        schema["required"] = sorted(required)
        schema.setdefault("additionalProperties", False)
        if docstring(cls):
            schema["description"] = docstring(cls)
        defs[key] = schema
        defs.update(built["defs"])
        return key

    def union(role: str, tag: str = "kind", default: str | None = None) -> str:
        key = (role, tag, default)
        if key not in unions:
            name = role if (tag, default) == ("kind", None) else f"{role}({tag}, default {default})"
            unions[key] = name
            defs[name] = {"oneOf": [{"$ref": f"#/$defs/{section(role, kind, cls, tag, default)}"}
                                    for kind, cls in kinds(role).items()]}
        return unions[key]

    protocols = []
    for name, cls in kinds("experiment").items():
        key = section("experiment", name, cls)
        schema = defs[key]
        for role in cls.roles:
            schema["properties"][role] = {"$ref": f"#/$defs/{union(role)}",
                                          "description": f"the {role}: its kind and fields"}
            if role != "optimizer":  # an experiment may choose a default optimizer for the space
                schema["required"] = sorted({*schema["required"], role})
        protocols.append({"$ref": f"#/$defs/{key}"})
    # fields holding a kind of another role (the spiking neuron's front_end, cell)
    pending = True
    while pending:
        pending = False
        for node in list(_walk(defs)):
            marker = node.pop("x-kind-of", None)
            if marker is not None:
                node["$ref"] = f"#/$defs/{union(marker['role'], marker['tag'], marker['default'])}"
                pending = True
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://closedloop.invalid/protocol.schema.json",
            "title": "closedloop protocol", "description": "A closedloop protocol file (docs/reference.md).",
            "type": "object", "required": ["kind"], "oneOf": protocols, "$defs": defs}


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


# --- the reference ----------------------------------------------------------------------------------

def docstring(cls) -> str:
    """The class's docstring, else its module's (an experiment kind is described by its module)."""
    return first_paragraph(cls.__doc__ or getattr(sys.modules.get(cls.__module__), "__doc__", ""))


def first_paragraph(text: str | None) -> str:
    text = inspect.cleandoc(text or "")
    return " ".join(text.split("\n\n")[0].split())


def unit_of(prop: dict) -> str:
    if prop.get("unit"):
        return str(prop["unit"])
    description = str(prop.get("description", "")).strip()
    if description in UNITS:
        return description
    for separator in (", ", ": "):  # "correlation time, s"; "audio: Hz"
        tail = description.rsplit(separator, 1)[-1].strip() if separator in description else ""
        if tail in UNITS:
            return tail
    head = re.split(r"[,;]", description, maxsplit=1)[0].strip()
    if head in UNITS and head != description:
        return head
    match = re.search(r"\(([^()]+)\)$", description)
    return match.group(1) if match and match.group(1) in UNITS else ""


def type_of(prop: dict, defs: dict) -> str:
    if "x-kind-of" in prop:
        marker = prop["x-kind-of"]
        return f"a {marker['role'].replace('_', ' ')} (by `{marker['tag']}`)"
    if "$ref" in prop:
        return "section"
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    for key in ("anyOf", "oneOf"):
        if key in prop:
            parts = [type_of(option, defs) for option in prop[key]]
            if all(p == "section" for p in parts[:-1]) and len(parts) > 2:
                return "a section (one of the kinds below)"
            return " or ".join(dict.fromkeys(parts))
    kind = prop.get("type")
    choices = _PATTERN_CHOICES.match(str(prop.get("pattern", "")))
    if kind == "string" and choices:
        return "one of " + ", ".join(f"`{c}`" for c in choices.group(1).split("|"))
    if kind == "string":
        return {"path": "path", "import": "`module:name`"}.get(prop.get("format"), "text")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(type_of(item, defs) for item in prop["prefixItems"]) + "]"
        return f"list of {type_of(prop.get('items', {}), defs)}" if prop.get("items") else "list"
    if kind == "object":
        return "mapping"
    return {"integer": "integer", "number": "number", "boolean": "true/false", "null": "null"}.get(kind, "any")


def bounds_of(prop: dict) -> str:
    if "anyOf" in prop:
        return "; ".join(b for b in (bounds_of(option) for option in prop["anyOf"]) if b)
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in prop:
            parts.append(f"{sign} {prop[key]:g}")
    for key, text in (("minItems", "at least {} items"), ("minLength", "at least {} characters")):
        if key in prop and not ("prefixItems" in prop and key == "minItems"):
            parts.append(text.format(prop[key]))
    return ", ".join(parts)


def default_of(name: str, schema: dict, prop: dict) -> str:
    if name in schema.get("required", []):
        return "required"
    if "default" not in prop:
        return ""
    value = prop["default"]
    if isinstance(value, dict):
        return "(see below)" if value else "{}"
    return "null" if value is None else json.dumps(value) if not isinstance(value, str) else f"`{value}`" if value else '""'


def rows(schema: dict, defs: dict, prefix: str = "", defaults: dict | None = None
         ) -> list[tuple[str, str, str, str, str, str]]:
    """(field, type, default, bounds, unit, description) of every field, nested sections flattened.
    `defaults`: the values the enclosing field's default gives this section, which win over the
    section class's own (the spiking neuron's drift defaults to a gain drift of size 0.1)."""
    found = []
    for name, prop in schema.get("properties", {}).items():
        if "const" in prop:  # a section's own tag (kind: gabor), named in its heading
            continue
        field = f"{prefix}{name}"
        nested = _nested(prop, defs)
        if defaults and name in defaults:
            prop = {**prop, "default": defaults[name]}
        found.append((field, type_of(prop, defs), default_of(name, schema, prop), bounds_of(prop), unit_of(prop),
                      str(prop.get("description", ""))))
        if len(nested) == 1:
            inner = prop.get("default")
            found += rows(nested[0][1], defs, f"{field}.", inner if isinstance(inner, dict) else None)
        elif nested:
            for label, sub in nested:
                found += rows(sub, defs, f"{field}[{label}].")
    return found


def _nested(prop: dict, defs: dict) -> list[tuple[str, dict]]:
    refs = [prop] if "$ref" in prop else [o for o in prop.get("anyOf", []) if "$ref" in o]
    sections = []
    for ref in refs:
        sub = defs[ref["$ref"].removeprefix("#/$defs/")]
        tags = [f"{k}: {v['const']}" for k, v in sub.get("properties", {}).items() if "const" in v]
        sections.append((tags[0] if tags else sub.get("title", ""), sub))
    return sections


def kind_table(role: str, name: str, cls) -> list[tuple[str, ...]]:
    config = config_of(cls)
    if config is None:
        return []
    built = model_schema(config, f"{role}.{name}")
    return rows(built["schema"], built["defs"])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """docs/reference.md."""
    lines = ["# Field reference", "",
             "Every kind of every role and every field it takes, generated from the code by "
             "`closedloop fields --markdown > docs/reference.md` (`tests/test_reference.py` fails when this page "
             "is stale). `closedloop fields KIND` prints one kind; `closedloop schema` writes a JSON Schema of "
             "protocol files for editors.", "",
             "A protocol names its experiment `kind` at the top level, then one section per role the experiment "
             "uses (`neuron:`, `space:`, `optimizer:`), each with its own `kind`. Nested sections are written "
             "as mappings (`noise: {kind: poisson}`); below they appear as dotted names (`noise.kind`). Fields of "
             "type *path* resolve beside the protocol file; `output` is relative to the working directory. "
             "Only `true`/`false` are booleans: `on`, `off`, `yes`, `no` stay words (YAML 1.2).", ""]
    lines += ["Roles: " + ", ".join(f"[{ROLE_TITLES[r].split(' (')[0].lower()}](#{_anchor(ROLE_TITLES[r])})"
                                    for r in ROLE_ORDER), ""]
    for role in ROLE_ORDER:
        lines += [f"## {ROLE_TITLES[role]}", ""]
        found = kinds(role)
        if not found:
            lines += ["None in this version.", ""]
            continue
        for name, cls in found.items():
            lines += [f"### `{name}`", ""]
            if docstring(cls):
                lines += [docstring(cls), ""]
            lines += _declarations(role, cls)
            table = kind_table(role, name, cls)
            if table:
                lines += ["| field | type | default | bounds | unit | description |",
                          "| --- | --- | --- | --- | --- | --- |"]
                lines += ["| " + " | ".join(_cell(c) if k else f"`{_cell(c)}`" for k, c in enumerate(row)) + " |"
                          for row in table]
                lines.append("")
            elif role != "judge":
                lines += ["No fields.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _declarations(role: str, cls) -> list[str]:
    if role == "experiment":
        sections = ", ".join(f"`{r}:`" for r in cls.roles) or "none"
        return [f"Sections: {sections}.", ""]
    if role == "judge":
        return [f"Judges claims of category `{cls.category}` ({cls.modality}s).", ""]
    return []


def _anchor(title: str) -> str:
    return re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")


def text(name: str) -> str:
    """One kind's fields as aligned text (`closedloop fields KIND`); KIND may be `role:kind`."""
    role_part, _, kind = name.rpartition(":")
    matches = [(role, kind) for role in ROLE_ORDER if (not role_part or role == role_part)
               and kind in registry.names(role)]
    if not matches:
        every = sorted({k for role in ROLE_ORDER for k in registry.names(role)})
        raise KeyError(registry.unknown_message(kind, every))
    out = []
    for role, kind in matches:
        cls = registry.lookup(role, kind)
        out.append(f"{role} kind {kind!r}: {docstring(cls)}")
        out += [line for line in _declarations(role, cls) if line]
        table = kind_table(role, kind, cls)
        header = ("field", "type", "default", "bounds", "unit", "description")
        widths = [max(len(r[k].replace("`", "")) for r in [header, *table]) for k in range(5)]
        for row in [header, *table]:
            cells = [c.replace("`", "") for c in row]
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells[:5], widths)) + "  " + cells[5])
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def summary() -> str:
    """Every kind of every role, one line each (`closedloop fields`)."""
    out = []
    for role in ROLE_ORDER:
        names = registry.names(role)
        out.append(f"{ROLE_TITLES[role]}:")
        for name in names:
            line = docstring(registry.lookup(role, name)).removeprefix(f"{name}: ")
            out.append(f"  {name:<20} {line if len(line) <= 90 else line[:88].rsplit(' ', 1)[0] + ' ...'}")
        if not names:
            out.append("  (none in this version)")
        out.append("")
    out.append("closedloop fields KIND prints the fields of one kind (role:KIND when two roles share the name).")
    return "\n".join(out) + "\n"


def schema_text() -> str:
    return json.dumps(json_schema(), indent=1, sort_keys=False) + "\n"
