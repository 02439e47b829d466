"""Films read in background workers for batch inference (``spine-models predict DIR``, the Compare page).

Why: decoding a real film (a 2-3 MP JPEG or DICOM) costs about as much as a small network's forward pass, so a
batch run reads the next films in ``num_workers`` processes (``torch.utils.data.DataLoader``, ``prefetch_factor``
batches ahead) while the networks run on the current ones. A file that cannot be read is an item with its
error, never an exception that ends the batch. Memory is bounded by the batches in flight, not by the number of
files: the loader yields films as they are read and keeps none.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from spine_models.errors import SpineInputError

__all__ = ["FilmItem", "FilmFiles", "film_batches", "image_files", "default_workers"]


@dataclass
class FilmItem:
    """One file of a batch: its position (1-based, as on the command line), path, and the decoded image or the
    reason it has none (``error_kind`` "input": a bad file, exit 2; "internal": a bug, exit 1)."""

    index: int
    path: str
    image: Any = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class FilmFiles:
    """A map-style dataset over files: item ``i`` is the :class:`FilmItem` of ``paths[i]`` read by ``read``."""

    def __init__(self, paths: Sequence[str | Path], read: Callable[[str], Any]) -> None:
        self.paths = [str(p) for p in paths]
        self.read = read

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> FilmItem:
        path = self.paths[i]
        try:
            return FilmItem(i + 1, path, image=self.read(path))
        except SpineInputError as exc:
            return FilmItem(i + 1, path, error=str(exc), error_kind="input")
        except Exception as exc:  # noqa: BLE001 - a reader bug on one file: reported on that item, the batch goes on
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return FilmItem(i + 1, path, error=f"internal error ({detail})", error_kind="internal")


def _as_list(batch: list[FilmItem]) -> list[FilmItem]:
    """The batch as read; the reader gives the pages its last films' decoding freed back (``_memory``): a reader
    otherwise holds the pages of the largest film it met."""
    from spine_models._memory import give_back_memory

    give_back_memory()
    return batch


def default_workers(n_files: int, device: Any = None) -> int:
    """Background readers for ``n_files``: none for a handful (a worker costs ~1 s to start); none either when the
    networks run on the CPU with a thread on every core (torch's default), since readers then only compete with them
    for the cores and each holds the films it reads ahead: measured with ``python bench/bench_batch.py --n 10 --n 1000
    --workers 0`` and ``--workers 2`` on 2 cores (Fraiwan classifier, quiet machine), 39.9 films/s against 29.7 and a
    peak of 1486 MB against 2167 MB for 1,000 films. Else (networks on a GPU, or cores torch leaves free) up to 2."""
    if n_files < 8:
        return 0
    import torch

    cores = os.cpu_count() or 1
    on_gpu = str(device or "").startswith("cuda") or (device is None and torch.cuda.is_available())
    return max(0, min(2, cores if on_gpu else cores - torch.get_num_threads()))


def film_batches(paths: Sequence[str | Path], read: Callable[[str], Any], *, batch_size: int = 8,
                 num_workers: int | None = None, prefetch: int = 2, device: Any = None) -> Iterator[list[FilmItem]]:
    """Lists of up to ``batch_size`` :class:`FilmItem` in file order, read by ``num_workers`` processes (None: see
    :func:`default_workers` for the networks' ``device``) each keeping ``prefetch`` batches ready."""
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise SpineInputError(f"batch size {batch_size}: use 1 or more")
    workers = default_workers(len(paths), device) if num_workers is None else int(num_workers)
    if workers < 0:
        raise SpineInputError(f"workers={workers}: use 0 (read in the main process) or more")
    if not paths:
        return iter(())
    kw: dict[str, Any] = {"prefetch_factor": max(1, int(prefetch)), "persistent_workers": False} if workers else {}
    loader = DataLoader(FilmFiles(paths, read), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_as_list, **kw)
    return iter(loader)


def image_files(inputs: Sequence[str | Path], extensions: Sequence[str]) -> list[str]:
    """The files named, with each folder replaced by the image files under it (recursive, sorted, hidden ones
    skipped). A folder holding no image file raises naming it."""
    out: list[str] = []
    exts = {e.lower() for e in extensions}
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            out.append(str(item))
            continue
        found = sorted(str(f) for f in p.rglob("*")
                       if f.is_file() and f.suffix.lower() in exts
                       and not any(part.startswith(".") for part in f.relative_to(p).parts))
        if not found:
            raise SpineInputError(f"folder holds no image file ({', '.join(sorted(exts))}); pass image files or "
                                  "a folder of them", p)
        out.extend(found)
    return out
