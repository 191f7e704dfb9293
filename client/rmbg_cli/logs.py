"""Logging set-up for the command line: the libraries log, the CLI decides how much is shown."""

from __future__ import annotations

import argparse
import logging


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    group.add_argument("-q", "--quiet", action="store_true", help="show only warnings and errors")


def configure(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
