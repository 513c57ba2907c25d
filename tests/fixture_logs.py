"""Short runs of every shipped protocol, and a comparison of two run logs.

tests/fixtures/logs/ holds one short log per shipped protocol, written by `python
tests/fixture_logs.py` at a revision whose logs are known good; test_fixtures.py runs the same
short protocols again and requires the very same trials. Regenerate only on purpose (a change
that is meant to change what a run logs), and say so in the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "logs"
SHORT_EVOLVE = {"generations": 3, "record_rendered": False}
OVERRIDES = {
    "tuning": {"orientations": 4, "spatial_frequencies": [0.1, 0.2], "phases": 2, "repeats": 2},
    "reverse_correlation": {"presentations": 200},
    "fooling": {"count": 20},
    "repeatability": {"items": 4, "blocks": 3},
    "sweep": {"grid": {"repeats": [1, 2]}, "seeds": 1, "base.budget": 40},
    "dream": {"steps": 2},
    "rearing": {"conditions": {"standard": {}, "white-static": {"static": "white"}}, "static.kinds": ["white"],
                "static.count": 20, "evolve.budget": 48, "evolve.seeds": 1},
}
# what differs between two runs of the same protocol and seed by design
VOLATILE_ATTRIBUTES = {"created", "package_version", "protocol_dir"}  # protocol_dir: where the checkout lies
VOLATILE_DATASETS = {"generations/wall_time"}


def protocols() -> list[Path]:
    return sorted((ROOT / "protocols").glob("*.yaml"))


def short_overrides(path: Path) -> dict:
    import yaml

    kind = yaml.safe_load(path.read_text())["kind"]
    overrides = dict(OVERRIDES.get(kind, SHORT_EVOLVE))
    if kind == "evolve" and "retest" in path.read_text():
        overrides["retest"] = {"top": 2, "repeats": 2}
    return overrides


def run_short(path: Path, out: Path) -> Path:
    """Run the protocol shortened; returns the log (a directory for a sweep)."""
    from closedloop import protocol as protocol_module

    protocol = protocol_module.load(path, short_overrides(path))
    experiment = protocol.experiment_cls(protocol)
    experiment.run(out, progress=False)
    return out


def log_files(path: Path) -> dict[str, Path]:
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*.h5"))}
    return {"": path}


def differences(expected: Path, actual: Path) -> list[str]:
    """What of the expected log (or sweep directory) the actual one lacks or holds otherwise,
    beyond wall times and dates. The actual log may hold more: new datasets, new attributes, new
    configuration fields (a later closedloop describes its logs more fully)."""
    found = []
    a_files, b_files = log_files(expected), log_files(actual)
    if set(a_files) != set(b_files):
        return [f"log files differ: {sorted(a_files)} vs {sorted(b_files)}"]
    for name in a_files:
        with h5py.File(a_files[name], "r") as a, h5py.File(b_files[name], "r") as b:
            found += [f"{name}:{d}" for d in _compare(a, b)]
    return found


def _compare(a: h5py.File, b: h5py.File) -> list[str]:
    found = []
    names_a, names_b = [], []
    a.visit(names_a.append)
    b.visit(names_b.append)
    if set(names_a) - set(names_b):
        found.append(f"objects missing: {sorted(set(names_a) - set(names_b))}")
    for name in ["/", *sorted(set(names_a) & set(names_b))]:
        for key in a[name].attrs:
            if name == "/" and key in VOLATILE_ATTRIBUTES:
                continue
            va, vb = a[name].attrs.get(key), b[name].attrs.get(key)
            same = _same_config(va, vb) if name == "config" else _same(va, vb)
            if not same:
                found.append(f"{name} attribute {key}: {_short(va)} != {_short(vb)}")
        if isinstance(a[name], h5py.Dataset) and name not in VOLATILE_DATASETS:
            va, vb = a[name][()], b[name][()]
            if not _same(va, vb):
                found.append(f"{name}: {_short(va)} != {_short(vb)}")
    return found


def _same_config(x, y) -> bool:
    """Resolved configurations (JSON): every expected field holds the same value."""
    import json

    def within(expected, actual) -> bool:
        if isinstance(expected, dict):
            return isinstance(actual, dict) and all(k in actual and within(v, actual[k]) for k, v in expected.items())
        return expected == actual

    return y is not None and within(json.loads(x), json.loads(y))


def _same(x, y) -> bool:
    if y is None:
        return False
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        return False
    if x.dtype.kind == "f" or y.dtype.kind == "f":
        return bool(np.array_equal(x, y, equal_nan=True))
    return bool(np.array_equal(x, y))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


if __name__ == "__main__":
    import shutil

    FIXTURES.mkdir(parents=True, exist_ok=True)
    chosen = [p for p in protocols() if not sys.argv[1:] or p.stem in sys.argv[1:]]
    for path in chosen:
        writes_directory = any(f"kind: {kind}" in path.read_text() for kind in ("sweep", "rearing"))
        out = FIXTURES / (path.stem if writes_directory else f"{path.stem}.h5")
        if out.is_dir():
            shutil.rmtree(out)
        out.unlink(missing_ok=True)
        run_short(path, out)
        if out.is_dir():  # keep the logs and the protocol a folder holds, not what its analysis wrote
            for written in out.rglob("*"):
                if written.is_file() and written.suffix != ".h5" and written.name != "protocol.yaml":
                    written.unlink()
        print(f"{path.name} -> {out}")
