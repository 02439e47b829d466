"""`spine-models compare` (not implemented yet)."""
from __future__ import annotations

import argparse

from spine_models.errors import SpineInputError

HELP = "(not implemented yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SpineInputError("this command is not implemented yet")
