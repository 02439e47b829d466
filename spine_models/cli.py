"""``spine-models`` command line.

Why a dispatcher: each command lives in ``spine_models/commands/<name>.py`` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``, imports its heavy libraries inside ``run`` (so
``--help`` is instant) and never catches user errors itself: this module turns a
:class:`~spine_models.errors.SpineInputError` into exit 2 with one line on stderr, and anything else
into exit 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from spine_models import __version__
from spine_models.errors import SpineInputError

__all__ = ["main", "build_parser", "COMMANDS"]

# command name -> module under spine_models.commands
COMMANDS: dict[str, str] = {
    "info": "info",
    "synth": "synth",
    "models": "models",
    "predict": "predict",
    "train": "train",
    "evaluate": "evaluate",
    "compare": "compare",
    "export-frames": "export_frames",
}


class _Parser(argparse.ArgumentParser):
    """argparse prints usage + error and exits 2; we keep exit 2 but make it one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _load(name: str):
    return importlib.import_module(f"spine_models.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spine-models", description="Spine imaging AI: read, synthesise, train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"spine-models {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except SpineInputError as exc:
        sys.stderr.write(f"spine-models {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("spine-models: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: keep the traceback, it is ours to fix
        traceback.print_exc()
        sys.stderr.write(f"spine-models {args.command}: internal error: {type(exc).__name__}: {exc}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    code = main()
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):  # a torchrun rank (train --nproc)
        from spine_models.engine.distributed import exit_rank

        exit_rank(code)
    raise SystemExit(code)
