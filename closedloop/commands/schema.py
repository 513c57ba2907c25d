"""closedloop schema [FILE]: a JSON Schema of protocol files, for editors' YAML support."""

from __future__ import annotations

from pathlib import Path

ORDER = 7


def execute(args) -> int:
    from closedloop import reference
    from closedloop.errors import ClosedLoopError

    text = reference.schema_text()
    if args.out is None or args.out == "-":
        print(text, end="")
        return 0
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ClosedLoopError(f"{out}: exists; add --overwrite to replace it")
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ClosedLoopError(f"{out}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {out}; in a protocol's first line: # yaml-language-server: $schema={out.resolve()}")
    return 0


def add_parser(sub):
    parser = sub.add_parser("schema", help="write a JSON Schema of protocol files (for editors)")
    parser.add_argument("out", nargs="?", help="output file (default: print it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=execute)
