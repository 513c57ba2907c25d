"""Round-trip overhead of a neuron over the wire (kind: remote) against the same neuron in-process.

For each case a `closedloop serve` process serves the neuron on loopback; this process builds
the same neuron from the same file and, generation after generation, presents the same stimuli
to both, alternating. Per generation: the in-process call, the remote round trip, and the
server's own time inside `present` (sent back in the reply), and the floor: the same stimulus
bytes sent to a bare ZeroMQ process that answers at once. The overhead is the round trip minus
the server's time: encoding, checking, ZeroMQ, decoding, both ways. Medians over the run.
The CPU columns are the time the protocol's own work takes on each side, the neuron's excluded
(client: median per generation; server: its process's CPU time over the run, less the neuron's,
per generation): on a busy machine every millisecond of CPU also waits its turn for a core.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/rig.py [--generations 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
import zmq

PIXEL = {"kind": "dnn", "import": "torch.nn:Flatten", "input_shape": [3, 48, 48], "layer": "", "channel": 0}
FACE = {"kind": "dnn", "model": "face", "unit": "face_probability"}
CASES = [  # (name, neuron section, stimuli per generation, repeats, wire dtype, goal for the overhead in ms)
    ("20 x 16x16, LNP cell", {"kind": "lnp", "size": 16}, 20, 4, "float64", 1.0),
    ("100 x 3x48x48, one pixel (torch Flatten)", PIXEL, 100, 1, "float64", 5.0),
    ("100 x 3x48x48, one pixel (torch Flatten)", PIXEL, 100, 1, "float32", 5.0),
    ("100 x 3x48x48, face unit", FACE, 100, 1, "float64", 5.0),
    ("100 x 3x48x48, face unit", FACE, 100, 1, "float32", 5.0),
]


# the floor: a process that answers every message with 1 kB at once, no format, no neuron
ECHO = """
import zmq
socket = zmq.Context().socket(zmq.ROUTER)
socket.bind("tcp://127.0.0.1:*")
print("serving on", socket.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
while True:
    frames = socket.recv_multipart(copy=False)
    socket.send_multipart([frames[0], frames[1], bytes(1024)])
"""


def start(command: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if "serving" not in line:
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split(" on ")[1].split()[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(section: dict, n: int, repeats: int, dtype: str, generations: int, folder: Path) -> dict[str, float]:
    from closedloop.neurons.remote import RemoteNeuron, RemoteSettings
    from closedloop.rig.server import load_neuron

    path = folder / f"{section['kind']}.yaml"
    path.write_text(yaml.safe_dump(section))
    local, _ = load_neuron(path)
    server, address = start([sys.executable, "-m", "closedloop.cli", "serve", str(path), "--bind", "tcp://127.0.0.1:*"])
    echo, echo_address = start([sys.executable, "-c", ECHO])
    try:
        remote = RemoteNeuron(RemoteSettings(address=address, dtype=dtype), 0)
        raw = zmq.Context.instance().socket(zmq.REQ)
        raw.connect(echo_address)
        rng = np.random.default_rng(0)
        low, high = local.value_range or (-1.0, 1.0)
        times = {"in-process": [], "remote": [], "server": [], "zeromq": [], "client cpu": []}
        server_cpu, neuron_cpu = 0.0, 0.0
        for generation in range(generations + 5):
            if generation == 5:  # the first few warm up caches and connections
                server_cpu = cpu_seconds(server.pid)
            stimuli = rng.uniform(low, high, (n, *local.stimulus_shape))
            moments = [time.perf_counter()]
            local.present(stimuli, repeats)
            moments.append(time.perf_counter())
            cpu = time.process_time()
            remote.present(stimuli, repeats)
            cpu = time.process_time() - cpu
            moments.append(time.perf_counter())
            raw.send_multipart([b"{}", stimuli.astype(dtype)], copy=False)
            raw.recv_multipart()
            moments.append(time.perf_counter())
            if generation >= 5:
                times["client cpu"].append(cpu)
                neuron_cpu += remote.served_cpu
                times["in-process"].append(moments[1] - moments[0])
                times["remote"].append(moments[2] - moments[1])
                times["server"].append(remote.served_seconds)
                times["zeromq"].append(moments[3] - moments[2])
        server_cpu = cpu_seconds(server.pid) - server_cpu
        remote.close()
        raw.close(linger=0)
    finally:
        for process in (server, echo):
            process.terminate()
            process.wait(30)
    t = {name: np.asarray(values) * 1000 for name, values in times.items()}
    return {"in-process": np.median(t["in-process"]), "remote": np.median(t["remote"]),
            "server": np.median(t["server"]), "overhead": np.median(t["remote"] - t["server"]),
            "overhead p90": np.percentile(t["remote"] - t["server"], 90), "zeromq": np.median(t["zeromq"]),
            "client cpu": np.median(t["client cpu"]), "server cpu": (server_cpu - neuron_cpu) / generations * 1000,
            "megabytes": n * np.prod(local.stimulus_shape) * np.dtype(dtype).itemsize / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200, help="per case with the fast cell")
    parser.add_argument("--slow-generations", type=int, default=30, help="per case with the face unit")
    args = parser.parse_args()
    print(f"medians over {args.generations} generations ({args.slow_generations} with the face unit), in ms; "
          f"loopback TCP; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| stimuli per generation | repeats | on the wire | MB | in-process call | remote round trip | "
          "server's own time | overhead (p90) | bare ZeroMQ round trip | CPU client / server | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for name, section, n, repeats, dtype, goal in CASES:
            generations = args.slow_generations if section is FACE else args.generations
            r = measure(section, n, repeats, dtype, generations, Path(folder))
            verdict = "met" if r["overhead"] <= goal else "missed"
            print(f"| {name} | {repeats} | {dtype} | {r['megabytes']:.2f} | {r['in-process']:.2f} | "
                  f"{r['remote']:.2f} | {r['server']:.2f} | {r['overhead']:.2f} ({r['overhead p90']:.2f}) | "
                  f"{r['zeromq']:.2f} | {r['client cpu']:.2f} / {r['server cpu']:.2f} | <= {goal:g}: {verdict} |",
                  flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
