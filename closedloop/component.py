"""What every neuron, space, optimizer and experiment shares: a validated config and a seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import annotated_types
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, SerializeAsAny, ValidationInfo, WrapValidator,
                      model_validator)


# The bounds policy: every number of a protocol is finite (NaN and Inf are refused everywhere),
# and each numeric field states the range that makes physical sense with ge/gt/le/lt, so the
# generated field reference shows it. A field that states no range still refuses magnitudes
# beyond MAGNITUDE, which no quantity of a protocol reaches (ms, Hz, pixels, nA, counts).
MAGNITUDE = 1e9
# shared quantities, for fields that hold several of them (lists, ranges)
Hertz = Annotated[float, Field(gt=0, le=100_000, description="Hz")]
Degrees = Annotated[float, Field(ge=-3600, le=3600, description="degrees")]
Decibels = Annotated[float, Field(ge=-120, le=0, description="dB re full scale")]
CyclesPerPixel = Annotated[float, Field(gt=0, le=0.5, description="cycles per pixel, up to Nyquist")]
Count = Annotated[int, Field(ge=1, le=10_000, description="how many")]
Level = Annotated[float, Field(ge=-1e6, le=1e6, description="a stimulus value")]


class Settings(BaseModel):
    """A component's protocol section. Unknown fields are errors, never silently ignored; numbers
    are finite and within their field's range (see MAGNITUDE)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _within_magnitude(self):
        for name, info in type(self).model_fields.items():
            if _has_range(info.metadata):
                continue
            for value in _numbers(getattr(self, name)):
                if abs(value) > MAGNITUDE:
                    raise ValueError(f"{info.alias or name}: {value:.3g} is beyond any physical value of this field "
                                     f"(at most {MAGNITUDE:g} in size)")
        return self


def _has_range(metadata) -> bool:
    return any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in metadata) and any(
        isinstance(m, (annotated_types.Ge, annotated_types.Gt)) for m in metadata)


def _numbers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _numbers(item)


class Component:
    kind: ClassVar[str] = "?"
    Config: ClassVar[type[Settings]] = Settings

    def __init__(self, config: Settings, seed: int):
        self.config = config
        self.seed = int(seed)

    def rng(self, *stream: int) -> np.random.Generator:
        """An independent generator for one purpose (e.g. one generation), fixed by the seed."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, *stream]))

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, as logged in the run file."""
        return {"kind": self.kind, **self.config.model_dump(mode="json")}


def check_in_subclasses(cls, name: str, check) -> None:
    """Wrap `cls`'s own method `name` in a role base's `check` (a decorator that refuses bad
    arguments in one line): every kind is checked, one from another package included, and a
    method inherited from a kind already checked is not wrapped again."""
    method = cls.__dict__.get(name)
    if method is not None and not getattr(method, "checked_by_base", False):
        wrapped = check(method)
        wrapped.checked_by_base = True
        setattr(cls, name, wrapped)


def nonfinite_rows(values) -> str:
    """"" when every value is finite, else the first rows that hold NaN or Inf: "[0, 3]" or "[0, 1, 2, 3, 4]..."."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if not bad.any():
        return ""
    rows = np.unique(np.nonzero(bad.reshape(len(bad), -1))[0])
    return f"{rows[:5].tolist()}{'...' if len(rows) > 5 else ''}"


def check_batch(owner, stimuli, what: str = "stimuli") -> None:
    """A batch of finite stimuli of `owner.stimulus_shape` (a neuron's or a space's), or one line
    saying what is wrong."""
    shape, wanted = np.shape(stimuli), tuple(owner.stimulus_shape)
    if shape[1:] != wanted:
        one = "; one stimulus s: s[None]" if shape == wanted else ""
        raise ValueError(f"{what} of shape {shape}; expected a batch (n, {', '.join(map(str, wanted))}){one}")
    rows = nonfinite_rows(stimuli)
    if rows:
        raise ValueError(f"{what}: NaN or Inf values in rows {rows}")


@dataclass(frozen=True)
class KindOf:
    """Marks a field that holds a kind of another role, chosen by its `tag` field (a spiking
    cell's `front_end: {kind: dog, ...}` or `cell: {model: adex, ...}`)."""

    role: str
    default: str
    tag: str = "kind"

    def validate(self, value, handler, info: ValidationInfo):
        if isinstance(value, Settings) or not isinstance(value, dict):
            return handler(value)
        config = self.config_class(value)
        if self.tag not in config.model_fields:  # the kind's Config does not repeat its own name
            value = {k: v for k, v in value.items() if k != self.tag}
        return config.model_validate(value, context=info.context)

    def __get_pydantic_json_schema__(self, core_schema, handler):
        """A placeholder that closedloop.reference replaces with the kinds of the role."""
        return {"x-kind-of": {"role": self.role, "default": self.default, "tag": self.tag}}

    def config_class(self, value: dict) -> type[Settings]:
        from closedloop import registry

        name = value.get(self.tag, self.default)
        try:
            return registry.lookup(self.role, str(name)).Config
        except KeyError as exc:
            raise ValueError(f"{self.tag}: {exc.args[0]}") from None


def kind_of(role: str, default: str, tag: str = "kind"):
    """The type of a field holding a kind of `role` (see KindOf)."""
    marker = KindOf(role, default, tag)
    return Annotated[SerializeAsAny[Settings], WrapValidator(marker.validate), marker]


@dataclass(frozen=True)
class FieldType:
    """Marks what a text field holds, for the field reference and the JSON Schema ("path": a file
    read by the run; "import": a Python object named 'module:attribute')."""

    name: str

    def __get_pydantic_json_schema__(self, core_schema, handler):
        return {**handler(core_schema), "format": self.name}


def protocol_dir(info: ValidationInfo) -> Path | None:
    """The folder of the protocol file being validated (given by protocol.validate), if any."""
    folder = (info.context or {}).get("protocol_dir")
    return Path(folder) if folder else None


def _beside_protocol(value: str, info: ValidationInfo) -> str:
    path = Path(value).expanduser()
    folder = protocol_dir(info)
    return str(folder / path) if folder is not None and not path.is_absolute() else str(path)


def _importable_beside_protocol(value: str, info: ValidationInfo) -> str:
    """'module:attribute' (a module on the path, or beside the protocol) or 'file.py:attribute';
    a module or file beside the protocol becomes 'FOLDER/module:attribute' (see neurons/dnn.py)."""
    module, sep, attribute = value.rpartition(":")
    folder = protocol_dir(info)
    if not sep or folder is None or Path(module).is_absolute():
        return value
    if module.endswith(".py"):
        return f"{folder / Path(module).expanduser()}:{attribute}"
    top = folder / module.split(".")[0]
    if top.with_suffix(".py").is_file() or top.is_dir():
        return f"{folder}/{module}:{attribute}"
    return value


# a file the run reads: relative paths resolve beside the protocol file, not the working directory
ProtocolPath = Annotated[str, AfterValidator(_beside_protocol), FieldType("path")]
# a Python object to import: a module (installed, or beside the protocol) or a .py file, and a name in it
ImportTarget = Annotated[str, AfterValidator(_importable_beside_protocol), FieldType("import")]
