"""Progress bars on stderr that ``--quiet`` (or a non-interactive caller) can switch off."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(it: Iterable[T], *, total: int | None = None, desc: str = "", quiet: bool = False) -> Iterator[T]:
    """Wrap an iterable in a tqdm bar on stderr unless ``quiet``."""
    if quiet:
        yield from it
        return
    from tqdm.auto import tqdm

    yield from tqdm(it, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
