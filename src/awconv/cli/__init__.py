"""The ``awconv`` command line: argument parsing only; the work is done by the library.

Each sub-command lives in its own module of this package, which exposes
``add_parser(subparsers)`` and sets ``func(args) -> int`` as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from awconv.engine.allocator import keep_freed_memory

__all__ = ["CliError", "main"]

# Sub-command modules of this package, in the order ``awconv --help`` lists them.
COMMANDS: tuple[str, ...] = ("train", "eval", "compare", "profile", "export", "detect", "make_shapes")


class CliError(Exception):
    """A user error: printed as one line, exit status 2, no traceback.

    ``main`` prints these the same way: ``ValueError``, ``TypeError``, ``KeyError``, ``OSError`` (a
    missing file, an unwritable or full run directory), ``FloatingPointError`` (a non-finite
    training loss) and ``RuntimeError``; ``--debug`` shows the traceback instead.
    """


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="awconv", description="AW-convolution (arXiv 2108.08205): models, training, tools."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"awconv.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keep_freed_memory()  # the command line owns its process (see awconv.engine.allocator)
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, TypeError, KeyError, OSError, FloatingPointError, RuntimeError) as error:
        if args.debug:
            raise
        print(f"awconv {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message (its type name when it has none).

    A ``RuntimeError`` from deep inside a library also names the ``--debug`` option.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if isinstance(error, RuntimeError) and not isinstance(error, CliError):
        text += " (run with --debug for the traceback)"
    return text


if __name__ == "__main__":
    sys.exit(main())
