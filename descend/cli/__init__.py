"""The ``descend`` command line.

``descend COMMAND [options]``; each command lives in its own module of this package and
registers itself in :func:`build_parser`. Commands: ``demo``, ``compare``, ``schedule``,
``lr-find``, ``bench``. Bad input (an unknown optimizer, a bad hyperparameter, an unreadable
configuration) ends in one line on stderr, ``descend: error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from descend import __version__
from descend.cli import bench, compare, demo, lr_find, schedule
from descend.cli.spec import SpecError

# Each entry adds one subcommand to the parser; the subcommand's parser stores the
# function that runs it as ``args.run`` (``run(args) -> exit code``).
COMMANDS = (
    demo.register,
    compare.register,
    schedule.register,
    lr_find.register,
    bench.register,
)


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with usage errors in one line: ``descend compare: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``descend`` argument parser, with one subparser per command."""
    parser = _Parser(
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
    try:
        return args.run(args)
    except SpecError as error:
        print(f"descend: error: {error}", file=sys.stderr)
        return 2
