"""The ``awconv`` command line: argument parsing only; the work is done by the library.

Each sub-command lives in its own module of this package, listed in ``COMMANDS``; the module
exposes ``add_parser(subparsers)`` and sets ``func(args) -> int`` as the parser's default. Adding
a command is one module and one entry in ``COMMANDS``.

The command modules import only the standard library and ``awconv.engine.choices`` at module
level; the engines (torch, timm, Lightning) are imported inside ``func``. So ``awconv --help`` and
``awconv COMMAND --help`` answer at once, ``profile`` and ``make-shapes`` run on the base install,
and a command that needs an extra says in one line which one to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "CliError", "HelpFormatter", "build_parser", "explicit_options", "main", "one_line"]

# Sub-command modules of this package, in the order ``awconv --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "train",
    "eval",
    "average",
    "compare",
    "inspect",
    "profile",
    "export",
    "detect",
    "make_shapes",
)

# Modules of the optional extras -> the extra that installs them (pyproject.toml).
EXTRA_MODULES = {
    "lightning": "train",
    "torchmetrics": "train",
    "tensorboard": "train",
    "matplotlib": "train",
    "mlxtend": "train",
    "sklearn": "train",
    "scipy": "train",
    "yaml": "train",
    "pycocotools": "detect",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
}


class CliError(Exception):
    """A user error: printed as one line, exit status 2, no traceback.

    ``main`` prints these the same way: ``ValueError``, ``TypeError``, ``KeyError``, ``OSError`` (a
    missing file, an unwritable or full run directory), ``FloatingPointError`` (a non-finite
    training loss), ``RuntimeError`` and a missing optional dependency (naming the extra to
    install); ``--debug`` shows the traceback instead.
    """


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, unless it has none (``None``, off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not _shows_default(action) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _shows_default(action: argparse.Action) -> bool:
    default = action.default
    hidden = default is None or default is False or default == [] or default is argparse.SUPPRESS
    return bool(action.option_strings) and not hidden


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows every default; its sub-command parsers are the same kind."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if not action.help and _shows_default(action):  # argparse shows no line for an option without help
            action.help = "default: %(default)s"
        return action


def build_parser() -> argparse.ArgumentParser:
    """The ``awconv`` parser with every command of ``COMMANDS``."""
    parser = _Parser(prog="awconv", description="AW-convolution (arXiv 2108.08205): models, training, tools.")
    parser.add_argument("--version", action=_Version, help="show the installed version and exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"awconv.cli.{name}").add_parser(subparsers)
    return parser


class _Version(argparse.Action):
    """``--version``: the installed distribution's version (``importlib.metadata``, read only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("awconv")
        except importlib.metadata.PackageNotFoundError:
            version = "(not installed)"
        print(f"awconv {version}")
        parser.exit()


def explicit_options(argv: Sequence[str]) -> set[str]:
    """The destinations of the options written on the command line ``argv`` (not left at defaults).

    ``argv`` is parsed again by a parser whose defaults are all suppressed, so abbreviations,
    ``--opt=value`` and repeated options count exactly as the real parse counts them.
    """
    parser = build_parser()
    pending = [parser]
    while pending:
        for action in pending.pop()._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return {dest for dest in vars(parser.parse_args(argv)) if dest not in ("command", "func")}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.explicit = explicit_options(argv)
    import logging  # not needed by --help, which has exited above

    from awconv.engine.allocator import keep_freed_memory

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keep_freed_memory()  # the command line owns its process (see awconv.engine.allocator)
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as error:
        if args.debug or (error.name or "").partition(".")[0] not in EXTRA_MODULES:
            raise
        module = error.name.partition(".")[0]
        extras = "train,detect" if args.command == "detect" else EXTRA_MODULES[module]
        print(
            f"awconv {args.command}: error: this command needs '{module}', which the base install lacks: "
            f"pip install 'awconv[{extras}]'",
            file=sys.stderr,
        )
        return 2
    except (CliError, ValueError, TypeError, KeyError, OSError, FloatingPointError, RuntimeError) as error:
        if args.debug:
            raise
        print(f"awconv {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """The first non-empty line of ``error``'s message (its type name when it has none).

    An error raised in a data-loader worker arrives wrapped ("Caught ValueError in DataLoader worker
    process 0" and the worker's traceback); its own last line is shown instead, so the message
    names the file or split. A ``RuntimeError`` from deep inside a library also names ``--debug``.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if text.startswith("Caught ") and "in DataLoader worker" in text and len(lines) > 1:
        kind, _, message = lines[-1].partition(": ")
        return f"{message or kind} (in a data-loader worker)"
    if isinstance(error, RuntimeError) and not isinstance(error, CliError):
        text += " (run with --debug for the traceback)"
    return text


if __name__ == "__main__":
    sys.exit(main())
