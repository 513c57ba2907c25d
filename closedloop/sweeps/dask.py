"""A sweep's runs on a Dask cluster: connect with a timeout, prepare every worker (also one that
joins or restarts later), and turn a run lost with its worker into a failed row, never a lost one.

Trust: a Dask scheduler and its workers exchange pickled objects with the client, so whoever runs
the scheduler can run code in this process (Dask's own trust model). Connect only to a cluster you
run yourself, over TLS (`tls://` addresses, certificates in Dask's `distributed.comm.tls` config)
when the network is shared; see docs/reliability.md.
"""

from __future__ import annotations

import socket
import struct

from distributed import Client, WorkerPlugin, as_completed

from closedloop.errors import ClosedLoopError, reason
from closedloop.sweeps.execute import prepare_worker, run_one


class PrepareWorker(WorkerPlugin):
    """Runs on every worker when it starts, including those that join or restart mid-sweep."""

    name = "closedloop-prepare-worker"

    def setup(self, worker):
        prepare_worker()


def _probe(address: str, timeout: float) -> None:
    """A Dask scheduler greets first with a short handshake frame; anything else (an HTTP server,
    a port that accepts and stays silent) is refused within `timeout` seconds."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            head = conn.recv(8, socket.MSG_WAITALL)
            if len(head) != 8 or not 0 < struct.unpack("<Q", head)[0] < 65536:
                raise ValueError("it does not speak Dask's protocol")
            greeting = conn.recv(struct.unpack("<Q", head)[0], socket.MSG_WAITALL)
            if b"pickle-protocol" not in greeting:
                raise ValueError("it does not speak Dask's protocol")
    except socket.timeout:
        raise ClosedLoopError(f"--scheduler {address}: no Dask scheduler answered within {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise ClosedLoopError(f"--scheduler {address}: cannot connect ({reason(exc)})") from None


def connect(scheduler, timeout: float = 10.0) -> Client:
    """A client of the scheduler at `scheduler` (an address, or a Client or cluster object)."""
    if isinstance(scheduler, Client):
        return scheduler
    if isinstance(scheduler, str):
        address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
        if address.startswith("tcp://"):
            _probe(address, timeout)
        scheduler = address
    try:
        return Client(scheduler, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 -- Dask raises many kinds here; each is one line
        raise ClosedLoopError(f"--scheduler {scheduler}: cannot connect ({type(exc).__name__}: {reason(exc)})") from None


def run_dask(tasks: list[dict], client: Client, on_done) -> None:
    """Every task on the cluster; a run whose workers kept dying is a failed row."""
    client.register_plugin(PrepareWorker())
    futures = {client.submit(run_one, task, pure=False): task for task in tasks}
    for future in as_completed(futures):
        try:
            row = future.result()
        except Exception as exc:  # noqa: BLE001 -- e.g. KilledWorker after Dask's own retries
            row = {"index": futures[future]["index"], "status": "failed",
                   "error": f"{type(exc).__name__}: {reason(exc)}"}
        on_done(row)
