"""Write a file so that a reader sees either the old one or the complete new one, never a torn one.

Why: a full disk (``ENOSPC``), a kill or a power cut while a checkpoint, weight file or model card is being written
must leave the previous version intact (issue 17): the new content goes to a temporary file beside the target, is
flushed to disk, and ``os.replace`` (atomic on POSIX and Windows) swaps it in. On failure the temporary file is
removed and the error propagates.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write it inside the block. On success it replaces ``path``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the bytes are on disk before the name points at them
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """``Path(path).write_text(text)``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
