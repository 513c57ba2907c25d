"""CLI commands: each module defines `add_parser(subparsers)` (and optionally ORDER)."""
