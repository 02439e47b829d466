"""ZIP archives, read safely.

Why: users upload studies as ZIPs. A ZIP can hold ``../../etc`` paths, absolute paths, symlinks, or
a few KB that inflate to gigabytes. Members are read into memory with hard caps (no extraction is
needed to read them) or, for code that needs real files, extracted by :func:`safe_extract_zip`
which refuses traversal and enforces the same caps.
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from spine_models.errors import CorruptFileError, DatasetError, DecompressionBombError

__all__ = ["iter_zip_members", "safe_extract_zip", "DEFAULT_MAX_ZIP_BYTES", "DEFAULT_MAX_MEMBERS", "MAX_RATIO"]

DEFAULT_MAX_ZIP_BYTES = int(os.environ.get("SPINE_MODELS_MAX_ZIP_BYTES", 4 * 1024**3))  # total uncompressed
DEFAULT_MAX_MEMBERS = 100_000
MAX_RATIO = 400  # uncompressed/compressed; DICOM and PNG compress far less


def _safe_member_name(info: zipfile.ZipInfo) -> str | None:
    """POSIX relative path of a member, or None for directories, links and unsafe names."""
    name = info.filename.replace("\\", "/")
    if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return None  # macOS resource forks and hidden files
    return str(path)


def _open(archive: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptFileError("corrupt or truncated ZIP archive; re-create it", archive) from exc


def _checked_infos(zf: zipfile.ZipFile, archive: str | Path, max_bytes: int) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = zf.infolist()
    if len(infos) > DEFAULT_MAX_MEMBERS:
        raise DatasetError(f"ZIP holds {len(infos):,} entries, above the limit of {DEFAULT_MAX_MEMBERS:,}", archive)
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise DecompressionBombError(
            f"ZIP declares {total:,} uncompressed bytes, above the limit of {max_bytes:,} (env SPINE_MODELS_MAX_ZIP_BYTES)", archive
        )
    out = []
    for info in infos:
        member = _safe_member_name(info)
        if member is None:
            continue
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO and info.file_size > 10 * 1024**2:
            raise DecompressionBombError(f"ZIP member {member!r} inflates {info.file_size / info.compress_size:.0f}:1; refused as a zip bomb", archive)
        out.append((info, member))
    return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str | Path) -> bytes:
    """Read at most the declared size + 1 byte, so a lying header cannot inflate without bound."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: encrypted member; NotImplementedError: unsupported compression method
        raise CorruptFileError(f"ZIP member {info.filename!r} cannot be read ({type(exc).__name__}: {exc})", archive) from exc
    if len(data) > info.file_size:
        raise DecompressionBombError(f"ZIP member {info.filename!r} inflates beyond its declared size", archive)
    return data


def iter_zip_members(archive: str | Path, *, max_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> Iterator[tuple[str, bytes]]:
    """(relative POSIX path, bytes) of each regular file member, skipping unsafe names and links."""
    with _open(archive) as zf:
        for info, member in _checked_infos(zf, archive, max_bytes):
            yield member, _read_member(zf, info, archive)


def safe_extract_zip(archive: str | Path, dest: str | Path, *, max_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> list[Path]:
    """Extract regular files under ``dest`` (created) and return their paths; unsafe members skipped."""
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with _open(archive) as zf:
        for info, member in _checked_infos(zf, archive, max_bytes):
            target = (root / member).resolve()
            if root not in target.parents:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_read_member(zf, info, archive))
            written.append(target)
    return written
