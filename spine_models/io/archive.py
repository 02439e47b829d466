"""ZIP archives, read safely.

Why: users upload studies as ZIPs. A ZIP can hold ``../../etc`` paths, absolute paths, symlinks, or
a few KB that inflate to gigabytes. Members are read into memory with hard caps (no extraction is
needed to read them) or, for code that needs real files, extracted by :func:`safe_extract_zip`
which refuses traversal and enforces the same caps.
"""
from __future__ import annotations

import errno
import lzma
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from spine_models.errors import ConfigError, CorruptFileError, DatasetError, DecompressionBombError
from spine_models.io.deid import display_name, safe_reason

__all__ = [
    "iter_zip_members",
    "safe_extract_zip",
    "check_zip",
    "DEFAULT_MAX_ZIP_BYTES",
    "DEFAULT_MAX_MEMBERS",
    "MAX_RATIO",
    "RATIO_MIN_BYTES",
]


def _env_bytes(default: int) -> int:
    raw = os.environ.get("SPINE_MODELS_MAX_ZIP_BYTES", "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigError(f"SPINE_MODELS_MAX_ZIP_BYTES={raw[:40]!r} is not a number; set it to a byte count such as 4294967296") from None
    if value <= 0:
        raise ConfigError("SPINE_MODELS_MAX_ZIP_BYTES must be a positive byte count, e.g. 4294967296")
    return value


DEFAULT_MAX_ZIP_BYTES = _env_bytes(4 * 1024**3)  # total uncompressed
DEFAULT_MAX_MEMBERS = 100_000
MAX_RATIO = 400  # uncompressed/compressed; DICOM and PNG compress far less
RATIO_MIN_BYTES = 1024**2  # the ratio test applies from 1 MiB (a member, or the whole archive), inclusive
_MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux, macOS, Windows)
_MAX_PATH_BYTES = 1024
# what zipfile and its codecs raise on corrupt data: zlib/bz2/lzma errors, bad CRC, bad headers
_READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error,
                lzma.LZMAError, struct.error, IndexError, KeyError, OverflowError)


def _safe_member_name(info: zipfile.ZipInfo) -> str | None:
    """POSIX relative path of a member, or None for directories, links and unsafe names."""
    name = info.filename.replace("\\", "/")
    if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or "\x00" in name:
        return None
    if len(name.encode("utf-8", "replace")) > _MAX_PATH_BYTES or any(len(p.encode("utf-8", "replace")) > _MAX_NAME_BYTES for p in path.parts):
        return None  # no file system can hold it (ENAMETOOLONG)
    if any(part.startswith(".") or part == "__MACOSX" for part in path.parts):
        return None  # macOS resource forks and hidden files
    return str(path)


def _label(archive: str | Path) -> str:
    return display_name(Path(str(archive)).name or "archive.zip")


def _member_label(member: str) -> str:
    return f"member {display_name(member)}"


def _open(archive: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except _READ_ERRORS as exc:
        raise CorruptFileError(f"corrupt or truncated ZIP archive ({type(exc).__name__}); re-create it", _label(archive)) from exc


def check_zip(zf: zipfile.ZipFile, label: str, max_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> list[tuple[zipfile.ZipInfo, str]]:
    """The archive-wide limits (entry count, declared total, compression ratio), then the safe regular members.

    Limits are inclusive: exactly ``max_bytes`` passes, one byte more is refused; the ratio test
    refuses ``>= MAX_RATIO`` for any member, and for the archive as a whole, of ``>= RATIO_MIN_BYTES``.
    """
    try:
        infos = zf.infolist()
    except _READ_ERRORS as exc:
        raise CorruptFileError(f"corrupt ZIP directory ({type(exc).__name__}); re-create it", label) from exc
    if len(infos) > DEFAULT_MAX_MEMBERS:
        raise DatasetError(f"ZIP holds {len(infos):,} entries, above the limit of {DEFAULT_MAX_MEMBERS:,}; split it", label)
    total = sum(max(int(i.file_size), 0) for i in infos)
    packed = sum(max(int(i.compress_size), 0) for i in infos)
    if total > max_bytes:
        raise DecompressionBombError(
            f"ZIP declares {total:,} uncompressed bytes, above the limit of {max_bytes:,} (env SPINE_MODELS_MAX_ZIP_BYTES)", label
        )
    if total >= RATIO_MIN_BYTES and total >= MAX_RATIO * packed:
        raise DecompressionBombError(
            f"ZIP inflates {total:,} bytes from {packed:,} (ratio {MAX_RATIO}:1 or more); refused as a zip bomb", label
        )
    out = []
    for info in infos:
        member = _safe_member_name(info)
        if member is None:
            continue
        if info.file_size >= RATIO_MIN_BYTES and info.file_size >= MAX_RATIO * info.compress_size:
            raise DecompressionBombError(
                f"ZIP {_member_label(member)} inflates {info.file_size:,} bytes from {info.compress_size:,} "
                f"(ratio {MAX_RATIO}:1 or more); refused as a zip bomb", label
            )
        out.append((info, member))
    return out


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, label: str) -> bytes:
    """Read at most the declared size + 1 byte, so a lying header cannot inflate without bound."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except _READ_ERRORS as exc:
        # RuntimeError: encrypted member; NotImplementedError: unsupported compression method; zlib.error: corrupt deflate
        what = {"RuntimeError": "is encrypted", "NotImplementedError": "uses an unsupported compression method"}.get(
            type(exc).__name__, f"is corrupt ({type(exc).__name__})")
        raise CorruptFileError(f"ZIP {_member_label(member)} {what}; re-create the archive", label) from exc
    if len(data) > info.file_size:
        raise DecompressionBombError(f"ZIP {_member_label(member)} inflates beyond its declared size; refused", label)
    return data


def iter_zip_members(
    archive: str | Path, *, max_bytes: int = DEFAULT_MAX_ZIP_BYTES, problems: list[str] | None = None
) -> Iterator[tuple[str, bytes]]:
    """(relative POSIX path, bytes) of each regular file member, skipping unsafe names and links.

    With ``problems`` given, a member that cannot be read is described there (one line, no names)
    and skipped; without it the first such member raises.
    """
    label = _label(archive)
    with _open(archive) as zf:
        for info, member in check_zip(zf, label, max_bytes):
            try:
                data = _read_member(zf, info, member, label)
            except CorruptFileError as exc:
                if problems is None:
                    raise
                problems.append(str(exc))
                continue
            yield member, data


def safe_extract_zip(
    archive: str | Path, dest: str | Path, *, max_bytes: int = DEFAULT_MAX_ZIP_BYTES, problems: list[str] | None = None
) -> list[Path]:
    """Extract regular files under ``dest`` (created) and return their paths; unsafe members skipped.

    A member that cannot be read or written (corrupt data, a file ``a`` beside a member ``a/b``, a
    name too long) goes to ``problems`` when given, else raises a one-line SpineInputError.
    """
    label = _label(archive)
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with _open(archive) as zf:
        for info, member in check_zip(zf, label, max_bytes):
            target = (root / member).resolve()
            if root not in target.parents:
                continue
            try:
                data = _read_member(zf, info, member, label)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            except CorruptFileError as exc:
                if problems is None:
                    raise
                problems.append(str(exc))
                continue
            except OSError as exc:
                why = {errno.EEXIST: "clashes with a file of the same name", errno.ENOTDIR: "clashes with a file of the same name",
                       errno.EISDIR: "clashes with a folder of the same name", errno.ENAMETOOLONG: "has a name too long for the disk",
                       errno.ENOSPC: "does not fit on the disk"}.get(exc.errno or 0, f"cannot be written ({safe_reason(exc, 40)})")
                error = DatasetError(f"ZIP {_member_label(member)} {why}; skipped (rename it in the archive)", label)
                if problems is None:
                    raise error from exc
                problems.append(str(error))
                continue
            written.append(target)
    return written
