"""Round-trip overhead of a neuron over the wire (kind: remote) against the same neuron in-process.

For each case a `closedloop serve` process serves the neuron on loopback; this process builds
the same neuron from the same file and, generation after generation, presents the same stimuli
to both, alternating. Per generation: the in-process call, the remote round trip, and the
server's own time inside `present` (sent back in the reply). The wire's overhead is the round
trip minus the server's time: encoding, ZeroMQ, decoding, both ways. Medians over the run.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rig.py [--generations 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

CASES = [  # (name, neuron section, stimuli per generation, repeats, wire dtype, goal for the overhead in ms)
    ("20 x 16x16, LNP cell", {"kind": "lnp", "size": 16}, 20, 4, "float64", 1.0),
    ("100 x 3x48x48, face unit", {"kind": "dnn", "model": "face", "unit": "face_probability"}, 100, 1, "float64", 5.0),
    ("100 x 3x48x48, face unit", {"kind": "dnn", "model": "face", "unit": "face_probability"}, 100, 1, "float32", 5.0),
]


def serve(path: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "serve", str(path), "--bind",
                                "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split(" on ")[1].split()[0]


def measure(section: dict, n: int, repeats: int, dtype: str, generations: int, folder: Path) -> dict[str, float]:
    from closedloop.neurons.remote import RemoteNeuron, RemoteSettings
    from closedloop.rig.server import load_neuron

    path = folder / f"{section['kind']}.yaml"
    path.write_text(yaml.safe_dump(section))
    local, _ = load_neuron(path)
    server, address = serve(path)
    try:
        remote = RemoteNeuron(RemoteSettings(address=address, dtype=dtype), 0)
        rng = np.random.default_rng(0)
        low, high = local.value_range or (-1.0, 1.0)
        times = {"in-process": [], "remote": [], "server": []}
        for generation in range(generations + 5):
            stimuli = rng.uniform(low, high, (n, *local.stimulus_shape))
            start = time.perf_counter()
            local.present(stimuli, repeats)
            middle = time.perf_counter()
            remote.present(stimuli, repeats)
            end = time.perf_counter()
            if generation >= 5:  # the first few warm up caches and connections
                times["in-process"].append(middle - start)
                times["remote"].append(end - middle)
                times["server"].append(remote.served_seconds)
        remote.close()
    finally:
        server.terminate()
        server.wait(30)
    t = {name: np.asarray(values) * 1000 for name, values in times.items()}
    return {"in-process": np.median(t["in-process"]), "remote": np.median(t["remote"]),
            "server": np.median(t["server"]), "overhead": np.median(t["remote"] - t["server"]),
            "overhead p90": np.percentile(t["remote"] - t["server"], 90),
            "megabytes": n * np.prod(local.stimulus_shape) * np.dtype(dtype).itemsize / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200, help="per case with the fast cell")
    parser.add_argument("--slow-generations", type=int, default=30, help="per case with the face unit")
    args = parser.parse_args()
    print(f"medians over {args.generations} generations (LNP) and {args.slow_generations} (face unit), in ms; "
          f"loopback TCP\n")
    print("| stimuli per generation | repeats | on the wire | MB | in-process call | remote round trip | "
          "server's own time | overhead (p90) | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for name, section, n, repeats, dtype, goal in CASES:
            generations = args.generations if section["kind"] == "lnp" else args.slow_generations
            r = measure(section, n, repeats, dtype, generations, Path(folder))
            verdict = "met" if r["overhead"] <= goal else "missed"
            print(f"| {name} | {repeats} | {dtype} | {r['megabytes']:.2f} | {r['in-process']:.2f} | "
                  f"{r['remote']:.2f} | {r['server']:.2f} | {r['overhead']:.2f} ({r['overhead p90']:.2f}) | "
                  f"<= {goal:g}: {verdict} |", flush=True)


if __name__ == "__main__":
    main()
