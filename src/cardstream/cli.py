"""The ``cardstream`` command.

Each subcommand lives in a module of its own that provides ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``cardstream
token`` does not pay for importing the loader.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Final

# command -> (module, one-line help)
COMMANDS: Final = {
    "up": ("cardstream.local.stack", "run the whole pipeline locally (moto + PostgreSQL)"),
    "generate": ("cardstream.generator", "write deterministic synthetic Kaggle-format CSV"),
    "replay": ("cardstream.replay", "post a Kaggle-format CSV to the API at a target rate"),
    "token": ("cardstream.token_cmd", "print a JWT valid against the local stack"),
    "merchant": ("cardstream.merchant_cmd", "create a merchant: its client and registry entry"),
    "status": ("cardstream.status", "counts at each stage of the local pipeline"),
    "migrate": ("db_loader.migrate", "create roles and apply database migrations"),
    "load": ("db_loader.backfill", "load Kaggle CSV or landed objects directly (backfill)"),
    "evaluate": ("cardstream.evaluate", "measure alert rules on labelled data"),
    "bootstrap-aws": ("cardstream.local.bootstrap", "create the AWS resources (emulator)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="cardstream",
        description="cardstream: near-real-time card transactions into PostgreSQL.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cardstream`` script."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)
        return 2
    module_name, help_text = COMMANDS[argv[0]]
    module = importlib.import_module(module_name)
    command_parser = argparse.ArgumentParser(prog=f"cardstream {argv[0]}", description=help_text)
    module.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
