"""Expand a sweep (base protocol x grid x seeds) into run protocols, each validated up front."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from closedloop import protocol as protocol_module
from closedloop.errors import ProtocolError, reason


@dataclass
class RunSpec:
    """One run of a sweep: its grid values, seed, resolved protocol and log path."""

    index: int
    params: dict[str, Any]
    seed: int
    data: dict
    text: str
    log: Path
    source: str
    directory: str = ""  # where the run's relative paths resolve: beside the base protocol's file

    @property
    def label(self) -> str:
        return ", ".join([*(f"{k}={value_label(v)}" for k, v in self.params.items()), f"seed={self.seed}"])


MAX_RUNS = 10_000  # each run is validated and built before the first starts


def value_label(value: Any) -> str:
    """A short text for a grid value: scalars as they are, sections as flow YAML."""
    if isinstance(value, (dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    return str(value)


def load_base(source: str, base: Any, directory: str | None = None) -> tuple[dict, str | None]:
    """The base protocol (a mapping, or a path relative to the sweep file) and the folder its
    relative paths resolve in: the base file's, or the sweep's for a mapping."""
    if isinstance(base, str):
        path = Path(source).parent / base
        if not path.is_file():
            raise ProtocolError(f"{source}: base: no such protocol file {str(path)!r}")
        directory = str(path.resolve().parent)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{source}: base: cannot read {str(path)!r} ({reason(exc)})") from None
        data = protocol_module.load_yaml(text, f"{source}: base ({path})")
        where = f"base ({path})"
    else:
        data, where = base, "base"
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: {where}: expected a protocol mapping, got {type(data).__name__}")
    if data.get("kind") == "sweep":
        raise ProtocolError(f"{source}: {where}.kind: a sweep's base cannot itself be a sweep")
    if "output" in data:
        raise ProtocolError(f"{source}: {where}.output: a sweep names each run's log itself; remove this field")
    return copy.deepcopy(data), directory


def check_grid(source: str, grid: dict[str, list]) -> None:
    for key, values in grid.items():
        parts = key.split(".")
        if not key or any(not part for part in parts):
            raise ProtocolError(f"{source}: grid.{key}: expected a dotted field path such as neuron.cell.noise_sigma")
        if parts[0] in ("kind", "seed", "output"):
            hint = {"kind": "a sweep varies one experiment kind", "seed": "give seeds: instead",
                    "output": "a sweep names each run's log itself"}[parts[0]]
            raise ProtocolError(f"{source}: grid.{key}: cannot be swept ({hint})")
        if len(values) == 0:
            raise ProtocolError(f"{source}: grid.{key}: expected a non-empty list of values")


def seed_list(seeds: int | list[int] | None, base: dict) -> list[int]:
    if seeds is None:
        return [int(base.get("seed", 0))]
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def run_key(data: dict) -> str:
    """A stable name for a run: the hash of its resolved protocol (grid values, seed, base)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(canonical.encode()).hexdigest()[:10]


def expand(source: str, base: Any, grid: dict[str, list], seeds, out_dir: Path,
           directory: str | None = None) -> list[RunSpec]:
    """Every run's protocol, validated before any run starts; the first bad one raises ProtocolError.
    Relative paths resolve beside the base protocol's file, or in `directory` (the sweep's)."""
    base_data, directory = load_base(source, base, directory)
    check_grid(source, grid)
    count = math.prod(len(values) for values in grid.values()) * (
        1 if seeds is None else seeds if isinstance(seeds, int) else len(seeds))
    if count > MAX_RUNS:
        raise ProtocolError(f"{source}: grid: {count:,} runs (grid x seeds); a sweep holds at most {MAX_RUNS:,}")
    keys = list(grid)
    # whole sections (optimizer: [{kind: cmaes}, ...]) are set before the fields inside them
    apply_order = sorted(keys, key=lambda key: key.count("."))
    runs, built = [], set()
    for combination in itertools.product(*(grid[key] for key in keys)):
        params = dict(zip(keys, combination))
        for seed in seed_list(seeds, base_data):
            data = copy.deepcopy(base_data)
            for key in apply_order:
                protocol_module.set_path(data, key, copy.deepcopy(params[key]))
            data["seed"] = seed
            spec = RunSpec(len(runs), params, seed, data, "", out_dir / f"run-{run_key(data)}.h5", "",
                           directory or "")
            spec.source = f"{source} (run {spec.index}: {spec.label})"
            protocol = protocol_module.from_dict(data, spec.source, directory=directory)
            spec.text = protocol.text
            _build_once(protocol, data, built)
            runs.append(spec)
    names = [spec.log.name for spec in runs]
    if len(set(names)) != len(names):
        raise ProtocolError(f"{source}: grid: two runs have the same parameters and seed (repeated values?)")
    return runs


def _build_once(protocol, data: dict, built: set) -> None:
    """Construct the components of each distinct run once, so constructor errors also come first."""
    key = run_key({k: v for k, v in data.items() if k != "seed"})
    if key in built:
        return
    built.add(key)
    protocol.experiment_cls(protocol)
