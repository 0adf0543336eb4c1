"""The ``descend`` command line.

``descend COMMAND [options]``; each command lives in its own module of this package and
registers itself in :func:`build_parser`. Commands: ``demo``.
"""

from __future__ import annotations

import argparse

from descend import __version__
from descend.cli import demo

# Each entry adds one subcommand to the parser; the subcommand's parser stores the
# function that runs it as ``args.run`` (``run(args) -> exit code``).
COMMANDS = (demo.register,)


def build_parser() -> argparse.ArgumentParser:
    """The ``descend`` argument parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="descend",
        description="descend: optimizers for PyTorch models, drop-in for torch.optim.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``descend`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code: 0 on success, 2 for a bad option value. ``--help`` and
    argparse's own usage errors raise ``SystemExit`` (with 0 and 2) as argparse does.
    """
    args = build_parser().parse_args(argv)
    return args.run(args)
