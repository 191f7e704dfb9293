"""``rmbg``: remove, serve, up, gateway, build-repo, export (server commands need the server extra)."""

from __future__ import annotations

import argparse
import sys

from rmbg_cli import build_repo, export, gateway, logs, remove, serve, up
from rmbg_cli.exits import EXIT_USAGE
from rmbg_cli.extras import MissingExtraError

SUBCOMMANDS = (remove, serve, up, gateway, build_repo, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rmbg", description="Self-hosted background removal on Triton.")
    logs.add_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub).set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args)
    try:
        return args.run(args)
    except MissingExtraError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
