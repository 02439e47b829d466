"""ZIP archives, read safely: the one ZIP reader and extractor of the package.

Why: users upload studies as ZIPs and train on dataset ZIPs. A ZIP can hold ``../../etc`` paths,
absolute paths, symlinks, or a few KB that inflate to gigabytes. Members are read into memory with
hard caps (:func:`iter_zip_members`: no extraction is needed to read a study) or, for code that needs
real files, extracted by :func:`safe_extract_zip` (:func:`extract_zip_once`: once per archive content,
into a cache) which refuses traversal and enforces the same caps. The limits are
``spine_models.io._limits``'s, the same for a study upload and a training set.

Unsafe members (traversal, absolute paths, links, names no disk can hold) are skipped, so the rest of
an upload still reads; with ``refuse_unsafe=True`` (training data: a dataset that tries to escape is
not one to learn from) the first one raises instead.
"""
from __future__ import annotations

import errno
import lzma
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from spine_models.errors import CorruptFileError, DatasetError, DecompressionBombError
from spine_models.io._limits import (ENV_MAX_ZIP_BYTES, MAX_ZIP_MEMBERS, MAX_ZIP_RATIO, ZIP_RATIO_MIN_BYTES,
                                     resolve_max_zip_bytes)
from spine_models.io.deid import display_name, safe_reason
from spine_models.io.digest import sha256_file

__all__ = ["iter_zip_members", "safe_extract_zip", "extract_zip_once", "check_zip", "COMPLETE_MARKER"]

COMPLETE_MARKER = ".complete"  # written last into a folder extract_zip_once finished
_MAX_NAME_BYTES = 255  # one path component (NAME_MAX on Linux, macOS, Windows)
_MAX_PATH_BYTES = 1024
_JUNK_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}  # OS litter; hidden (dot) names are skipped too
_CHUNK = 1 << 20
# what zipfile and its codecs raise on corrupt data: zlib/bz2/lzma errors, bad CRC, bad headers
_READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error,
                lzma.LZMAError, struct.error, IndexError, KeyError, OverflowError)


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why a member must not be written (traversal, a link, a name too long), or None when it is safe."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or "\x00" in name:
        return "points outside the archive (path traversal); re-create the ZIP with relative paths"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link; store real files"
    if len(name.encode("utf-8", "replace")) > _MAX_PATH_BYTES or any(len(p.encode("utf-8", "replace")) > _MAX_NAME_BYTES for p in path.parts):
        return "has a name too long for any disk; rename it in the archive"  # ENAMETOOLONG
    return None


def _is_dir(info: zipfile.ZipInfo) -> bool:
    """ZipInfo.is_dir without its IndexError on an empty member name (a hostile directory can hold one)."""
    return info.filename.endswith("/")


def _safe_member_name(info: zipfile.ZipInfo, *, folders: bool = False) -> str | None:
    """POSIX relative path of a member, or None for unsafe or empty names, OS litter and (unless ``folders``) directories."""
    if not info.filename.strip("/") or (_is_dir(info) and not folders) or _unsafe_reason(info) is not None:
        return None
    path = PurePosixPath(info.filename.replace("\\", "/"))
    if any(part.startswith(".") or part in _JUNK_NAMES for part in path.parts):
        return None  # macOS resource forks, hidden files, Windows thumbnails
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


def check_zip(zf: zipfile.ZipFile, label: str, max_bytes: int | None = None, *,
              refuse_unsafe: bool = False) -> list[tuple[zipfile.ZipInfo, str]]:
    """The archive-wide limits (entry count, declared total, compression ratio), then the safe regular members.

    Limits are inclusive: exactly ``max_bytes`` passes, one byte more is refused; the ratio test
    refuses ``>= MAX_ZIP_RATIO`` for any member, and for the archive as a whole, of ``>= ZIP_RATIO_MIN_BYTES``.
    ``refuse_unsafe``: an unsafe member raises (DatasetError) instead of being skipped.
    """
    max_bytes = resolve_max_zip_bytes(max_bytes)
    try:
        infos = zf.infolist()
    except _READ_ERRORS as exc:
        raise CorruptFileError(f"corrupt ZIP directory ({type(exc).__name__}); re-create it", label) from exc
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"ZIP holds {len(infos):,} entries, above the limit of {MAX_ZIP_MEMBERS:,}; split it", label)
    total = sum(max(int(i.file_size), 0) for i in infos)
    packed = sum(max(int(i.compress_size), 0) for i in infos)
    if total > max_bytes:
        raise DecompressionBombError(
            f"ZIP declares {total:,} uncompressed bytes, above the limit of {max_bytes:,} (env {ENV_MAX_ZIP_BYTES}); "
            "extract it yourself and pass the folder, or raise the limit", label
        )
    if total >= ZIP_RATIO_MIN_BYTES and total >= MAX_ZIP_RATIO * packed:
        raise DecompressionBombError(
            f"ZIP inflates {total:,} bytes from {packed:,} (ratio {MAX_ZIP_RATIO}:1 or more); refused as a zip bomb", label
        )
    out = []
    for info in infos:
        if refuse_unsafe and (why := _unsafe_reason(info)):
            raise DatasetError(f"ZIP {_member_label(info.filename)} {why}; refused", label)
        member = _safe_member_name(info)
        if member is None:
            continue
        if info.file_size >= ZIP_RATIO_MIN_BYTES and info.file_size >= MAX_ZIP_RATIO * info.compress_size:
            raise DecompressionBombError(
                f"ZIP {_member_label(member)} inflates {info.file_size:,} bytes from {info.compress_size:,} "
                f"(ratio {MAX_ZIP_RATIO}:1 or more); refused as a zip bomb", label
            )
        out.append((info, member))
    return out


def _member_error(exc: BaseException, member: str, label: str) -> CorruptFileError:
    # RuntimeError: encrypted member; NotImplementedError: unsupported compression method; zlib.error: corrupt deflate
    what = {"RuntimeError": "is encrypted", "NotImplementedError": "uses an unsupported compression method"}.get(
        type(exc).__name__, f"is corrupt ({type(exc).__name__})")
    return CorruptFileError(f"ZIP {_member_label(member)} {what}; re-create the archive", label)


def _too_big(member: str, label: str) -> DecompressionBombError:
    return DecompressionBombError(f"ZIP {_member_label(member)} inflates beyond its declared size; refused", label)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, label: str) -> bytes:
    """Read at most the declared size + 1 byte, so a lying header cannot inflate without bound."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)
    except _READ_ERRORS as exc:
        raise _member_error(exc, member, label) from exc
    if len(data) > info.file_size:
        raise _too_big(member, label)
    return data


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, member: str, label: str, target: Path) -> None:
    """Stream a member to ``target`` in 1 MiB blocks, at most its declared size (a large film never sits in
    memory). Read errors become CorruptFileError; write errors stay OSError for the caller to name."""
    left = info.file_size
    try:
        src = zf.open(info)
    except _READ_ERRORS as exc:
        raise _member_error(exc, member, label) from exc
    with src, open(target, "wb") as dst:
        try:
            while True:
                try:
                    block = src.read(min(_CHUNK, left + 1))
                except _READ_ERRORS as exc:
                    raise _member_error(exc, member, label) from exc
                if not block:
                    return
                if len(block) > left:
                    raise _too_big(member, label)
                left -= len(block)
                dst.write(block)
        except BaseException:
            target.unlink(missing_ok=True)  # no half-written member left behind
            raise


def iter_zip_members(
    archive: str | Path, *, max_bytes: int | None = None, problems: list[str] | None = None
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
    archive: str | Path, dest: str | Path, *, max_bytes: int | None = None, problems: list[str] | None = None,
    refuse_unsafe: bool = False,
) -> list[Path]:
    """Extract regular files under ``dest`` (created) and return their paths; unsafe members skipped
    (raised with ``refuse_unsafe``). Safe folder entries are created too, empty ones included.

    A member that cannot be read or written (corrupt data, a file ``a`` beside a member ``a/b``, a
    name too long) goes to ``problems`` when given, else raises a one-line SpineInputError.
    """
    label = _label(archive)
    root = Path(dest).resolve()
    root.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with _open(archive) as zf:
        members = check_zip(zf, label, max_bytes, refuse_unsafe=refuse_unsafe)
        for info in zf.infolist():  # folder entries first, so an empty class folder exists as in the archive
            if _is_dir(info) and (folder := _safe_member_name(info, folders=True)) not in (None, "."):
                (root / folder).mkdir(parents=True, exist_ok=True)
        for info, member in members:
            target = (root / member).resolve()
            if root not in target.parents:
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                _copy_member(zf, info, member, label, target)
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


def extract_zip_once(archive: str | Path, cache_root: str | Path, *, max_bytes: int | None = None,
                     refuse_unsafe: bool = False) -> Path:
    """Extract ``archive`` into ``cache_root/<sha256[:16]>`` unless that folder is already complete; return it.

    Why: readers take paths, and re-extracting the same archive on every run or rerun wastes the scarce
    CPU. The folder is written under a temporary name and renamed when done (``COMPLETE_MARKER`` inside),
    so a crash or a second process never leaves a half-extracted folder that looks finished.
    """
    digest = sha256_file(archive)
    root = Path(cache_root)
    final = root / digest[:16]
    if (final / COMPLETE_MARKER).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=root))
    try:
        safe_extract_zip(archive, tmp, max_bytes=max_bytes, refuse_unsafe=refuse_unsafe)
        (tmp / COMPLETE_MARKER).write_text(digest)
        try:
            tmp.rename(final)
        except OSError:  # another process won the race, or a stale partial folder exists
            if (final / COMPLETE_MARKER).is_file():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
