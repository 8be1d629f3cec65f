"""The ``laminar-polars`` command (also ``python -m laminar_polars``).

``laminar-polars demo`` streams live OHLC bars over a synthetic feed
(`laminar_polars.cli.demo`); ``laminar-polars run PIPELINE.sql --input
SOURCE=PATH ...`` replays files through a pipeline, the backtest
(`laminar_polars.cli.run`, described in docs/cli.md).

A bad argument is reported on one line, ``laminar-polars run: error: ...``,
with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

import laminar_polars as lp
from laminar_polars.cli import demo, run
from laminar_polars.cli.demo import DemoResult, run_demo

__all__ = ["DemoResult", "build_parser", "main", "run_demo"]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command's parser, with its ``demo`` and ``run`` subcommands."""
    parser = _Parser(
        prog="laminar-polars",
        description="laminar_polars: an embedded streaming SQL engine whose query engine "
                    "is Polars.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {lp.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    demo_parser = commands.add_parser(
        "demo", help="live OHLC bars over a synthetic trade feed",
        description=(demo.__doc__ or "").split("\n\n")[1].replace("``", ""))
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(main=demo.main, parser=demo_parser)
    run_parser = commands.add_parser(
        "run", help="replay files through a pipeline (a backtest)",
        description=(run.__doc__ or "").split("\n\n")[1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_arguments(run_parser)
    run_parser.set_defaults(main=run.main, parser=run_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    code: int = args.main(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
