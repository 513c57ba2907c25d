"""closedloop fields [KIND]: every kind of every role, or the fields of one kind (docs/reference.md)."""

from __future__ import annotations

ORDER = 6


def execute(args) -> int:
    from closedloop import reference
    from closedloop.errors import ClosedLoopError

    if args.markdown:
        print(reference.markdown(), end="")
    elif args.kind is None:
        print(reference.summary(), end="")
    else:
        try:
            print(reference.text(args.kind), end="")
        except KeyError as exc:
            raise ClosedLoopError(f"fields {args.kind}: {exc.args[0]}") from None
    return 0


def add_parser(sub):
    parser = sub.add_parser("fields", help="the kinds of every role and the fields each takes")
    parser.add_argument("kind", nargs="?", help="a kind (e.g. dnn, fourier, cmaes, tuning), or role:kind")
    parser.add_argument("--markdown", action="store_true", help="the whole reference as docs/reference.md")
    parser.set_defaults(func=execute)
