"""Reading images and DICOM studies: typed, de-identified, with one-line errors for bad input.

Public API::

    from spine_models.io import read_image, read_image_bytes, read_study, apply_window

    rg = read_image("film.dcm")            # Radiograph: .pixels float32 HxW in [0, 1] (display values:
                                           # Modality LUT → VOI LUT/window → MONOCHROME1 inverted),
                                           # .bits, .pixel_spacing_mm (row, col) | None, .view, .modality,
                                           # .photometric, .frames, .volume (F,H,W) | None, .format,
                                           # .name (de-identified), .header (safe fields), .to_dict()
    rg = read_image_bytes(upload_bytes, "upload.png")   # what the app gets from st.file_uploader
    study = read_study("study_dir_or.zip")  # Study.series: [Series(.description, .pixels (F,H,W), ...)]
    shown = apply_window(rg.pixels, center=0.4, width=0.5)

Limits: ``max_pixels`` (default 100 MP, env ``SPINE_MODELS_MAX_PIXELS``) is checked on the declared
size before decoding; ``min_size`` (32 px) refuses thumbnails. Every bad file raises a
:class:`~spine_models.errors.SpineInputError` subclass whose message names the file and the problem.
``make_dicom`` (:mod:`spine_models.io.dicom_build`) writes valid DICOM files for tests and phantoms.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import BinaryIO

from spine_models.errors import EmptyFileError, SpineInputError, UnsupportedFormatError
from spine_models.io._limits import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIZE, read_file_bytes, resolve_max_pixels
from spine_models.io.deid import deidentify_dataset, display_name, pseudonym, remap_uid
from spine_models.io.radiograph import Radiograph
from spine_models.io.sniff import EXTENSION_FORMATS, describe_format, sniff_format
from spine_models.io.study import Series, Study, read_study
from spine_models.io.window import apply_window

__all__ = [
    "Radiograph",
    "Series",
    "Study",
    "read_image",
    "read_image_bytes",
    "read_study",
    "apply_window",
    "sniff_format",
    "deidentify_dataset",
    "pseudonym",
    "remap_uid",
    "display_name",
    "make_dicom",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_SIZE",
    "resolve_max_pixels",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".dcm", ".dicom", ".dic", ".ima")


def make_dicom(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See :func:`spine_models.io.dicom_build.make_dicom` (imported lazily: it pulls in pydicom)."""
    from spine_models.io.dicom_build import make_dicom as _make

    return _make(*args, **kwargs)


def read_image_bytes(
    data: bytes, name: str, *, max_pixels: int | None = None, min_size: int = DEFAULT_MIN_SIZE, show_name: bool | None = None,
    draft: int | None = None,
) -> Radiograph:
    """Decode image bytes (an upload); ``name`` is used for the extension check and, as a neutral id
    (``file-<hash>.<ext>``, see :func:`~spine_models.io.deid.display_name`), in messages and ``.name``;
    ``show_name=True`` (or env ``SPINE_MODELS_SHOW_NAMES=1``) keeps the real base name. ``draft=N``: a JPEG
    may be decoded at a reduced scale (no less than N px per side, grayscale) for thumbnails."""
    base = PurePath(str(name)).name or "upload"
    suffix = PurePath(base).suffix.lower()
    name = display_name(base, show=show_name)
    if not data:
        raise EmptyFileError("file is empty (0 bytes); re-copy or re-export it", name)
    fmt = sniff_format(bytes(data[:4096]))
    claimed = EXTENSION_FORMATS.get(suffix)
    if fmt not in ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "DICOM"):
        said = f" (despite its {suffix} extension)" if claimed and claimed != fmt else ""  # suffix: a known one only
        what = "content is not a recognised image format" if fmt == "UNKNOWN" else f"is {describe_format(fmt)}, not an image"
        advice = {
            "ZIP": "read a study archive with read_study / --data, or unzip it first",
            "JPEG2000": "wrap it in DICOM or convert it to PNG",
        }.get(fmt, "supply a PNG, JPEG, TIFF, BMP or DICOM image")
        raise UnsupportedFormatError(f"{what}{said}; {advice}", name)
    notes: list[str] = []
    if claimed and claimed != fmt:
        notes.append(f"extension {suffix} but the content is {fmt}; read as {fmt}")
    if fmt == "DICOM":
        from spine_models.io.dicom import read_dicom

        result = read_dicom(bytes(data), name, max_pixels=max_pixels, min_size=min_size)
    else:
        from spine_models.io.image import read_raster

        result = read_raster(bytes(data), name, fmt, max_pixels=max_pixels, min_size=min_size, draft=draft)
    result.notes[:0] = notes
    return result


def read_image(
    path: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    show_name: bool | None = None,
    draft: int | None = None,
) -> Radiograph:
    """Read one image file (or bytes / a binary file object) into a de-identified :class:`Radiograph`.

    The format is sniffed from the content, never the extension. Raises a SpineInputError subclass
    for every kind of bad input; messages name the file by its neutral id unless ``show_name``.
    ``draft``: see :func:`read_image_bytes` (thumbnails only).
    """
    kw = {"max_pixels": max_pixels, "min_size": min_size, "show_name": show_name, "draft": draft}
    if isinstance(path, (bytes, bytearray, memoryview)):
        return read_image_bytes(bytes(path), name or "upload", **kw)
    if hasattr(path, "read"):
        label = str(name or getattr(path, "name", None) or "upload")
        try:
            data = path.read()  # type: ignore[union-attr]
        except OSError as exc:
            raise SpineInputError(f"cannot read the file ({exc.strerror or type(exc).__name__})", display_name(label, show=show_name)) from exc
        if isinstance(data, str):
            raise UnsupportedFormatError("was opened in text mode; open it with 'rb'", display_name(label, show=show_name))
        return read_image_bytes(data, label, **kw)
    file = Path(path)  # type: ignore[arg-type]
    shown = display_name(file.name or "file", show=show_name)
    try:
        is_dir = file.is_dir()
    except OSError:
        is_dir = False  # read_file_bytes names what is wrong
    if is_dir:
        raise UnsupportedFormatError("is a folder, not an image; use read_study for a DICOM series folder", shown)
    data = read_file_bytes(file, shown)
    return read_image_bytes(data, name or file.name, **kw)
