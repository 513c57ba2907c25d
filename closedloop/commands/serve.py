"""closedloop serve NEURON.yaml: answer `kind: remote` requests for one neuron (docs/rig.md)."""

from __future__ import annotations

ORDER = 6


def execute(args) -> int:
    from closedloop.errors import ClosedLoopError
    from closedloop.rig.server import Server, load_neuron
    from closedloop.rig.simulator import Rig, RigSettings

    if not 0 < args.max_message <= 1_000_000:  # also refuses nan
        raise ClosedLoopError(f"--max-message {args.max_message}: expected a number of MB above 0, at most 1e6")
    try:
        rig = RigSettings(latency=args.latency, jitter=args.jitter, drop=args.drop, restart_every=args.restart_every,
                          stall_after=args.stall_after, seed=args.rig_seed)
    except ValueError as exc:
        error = exc.errors()[0]
        flag = {"seed": "rig-seed"}.get(str(error["loc"][0]), str(error["loc"][0]).replace("_", "-"))
        raise ClosedLoopError(f"--{flag}: {error['msg']}") from None
    neuron, description = load_neuron(args.neuron)
    server = Server(neuron, description, bind=args.bind, keys=args.keys, max_bytes=int(args.max_message * 2**20),
                    rig=Rig(rig))
    endpoint = server.bind()
    shape = "x".join(map(str, neuron.stimulus_shape))
    security = f"CurveZMQ keys in {args.keys}" if args.keys else "loopback only"
    simulated = ", simulating a rig" if rig.simulating else ""
    print(f"serving {description['kind']} ({shape} {neuron.response_unit}) on {endpoint} ({security}{simulated}); "
          f"Ctrl-C stops", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


def add_parser(sub):
    parser = sub.add_parser("serve", help="serve a neuron to `kind: remote` protocols over ZeroMQ")
    parser.add_argument("neuron", help="a neuron section (kind: spiking, ...; optional seed) or a protocol "
                                       "whose neuron to serve")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555",
                        help="ZeroMQ address (default tcp://127.0.0.1:5555; port * picks a free one); anything "
                             "but loopback needs --keys")
    parser.add_argument("--keys", metavar="DIR", help="CurveZMQ: encrypt, and accept only the clients whose public "
                                                      "keys are in DIR (made by: closedloop keys DIR)")
    parser.add_argument("--max-message", type=float, default=1024, metavar="MB",
                        help="largest request answered; larger ones get an error reply (default 1024)")
    rig = parser.add_argument_group("rig simulation", "behave like a real rig, to test a protocol against one")
    rig.add_argument("--latency", type=float, default=0.0, metavar="S", help="seconds added before every reply")
    rig.add_argument("--jitter", type=float, default=0.0, metavar="S", help="up to this many seconds more, at random")
    rig.add_argument("--drop", type=float, default=0.0, metavar="P", help="probability that a trial is dropped")
    rig.add_argument("--restart-every", type=int, metavar="N",
                     help="restart on every N-th presentation request, losing it and the neuron's state")
    rig.add_argument("--stall-after", type=int, metavar="N", help="answer N presentation requests, then hang")
    rig.add_argument("--rig-seed", type=int, default=0, metavar="N", help="which trials are dropped")
    parser.set_defaults(func=execute)
