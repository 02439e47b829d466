"""sha256 of a file's contents, read in 1 MiB blocks.

Why one function: a model card pins its weights, a phantom MANIFEST its files, a dataset fingerprint
its images and the ZIP extractor its cache folder by the same digest of the same bytes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["sha256_file"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file at ``path`` (streamed: a large archive or weight file never sits in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
