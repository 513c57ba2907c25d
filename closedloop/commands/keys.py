"""closedloop keys DIR: CurveZMQ key pairs for a server reached from other machines (docs/rig.md)."""

from __future__ import annotations

ORDER = 7


def execute(args) -> int:
    from closedloop.rig.keys import create

    for path in create(args.folder):
        print(f"wrote {path}")
    print(f"server: closedloop serve NEURON.yaml --bind tcp://0.0.0.0:5555 --keys {args.folder}")
    print("client: copy server.key, client.key and client.key_secret into a folder and give it as neuron.keys")
    return 0


def add_parser(sub):
    parser = sub.add_parser("keys", help="make CurveZMQ keys for closedloop serve --keys and neuron.keys")
    parser.add_argument("folder", help="where to write server.key(_secret) and client.key(_secret)")
    parser.set_defaults(func=execute)
