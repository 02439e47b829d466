"""DICOM files → de-identified :class:`Radiograph` (and the per-file step :func:`read_dicom_frames`).

Why: DICOM pixels are not display values. The order is fixed by the standard: stored values →
Modality LUT (rescale slope/intercept or LUT; pydicom's ``apply_modality_lut``) → VOI LUT or window
(pydicom's ``apply_voi_lut``) → scale to [0, 1] → MONOCHROME1 inverted. Transfer syntaxes are decoded
by pydicom's decoders (Pillow for JPEG baseline/2000, pylibjpeg plugins for JPEG-LS/lossless); when
none is installed the error names the plugin. Nothing identifying leaves this module: see
:mod:`spine_models.io.deid`.
"""
from __future__ import annotations

import io
import logging
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, NamedTuple

import numpy as np

from spine_models.errors import (
    CorruptFileError,
    MissingPixelDataError,
    SpineInputError,
    TruncatedFileError,
    UnsupportedPhotometricError,
    UnsupportedTransferSyntaxError,
)
from spine_models.io._limits import DEFAULT_MIN_SIZE, check_declared_size, check_frame_size
from spine_models.io.deid import collect_identifiers, header_dict, pseudonym, remap_uid, scrub_text, uid_name
from spine_models.io.pixels import scale_to_unit
from spine_models.io.radiograph import Radiograph

__all__ = ["read_dicom", "read_dicom_frames", "read_dicom_stored", "DicomFrames", "parse_dicom", "orientation_of", "slice_geometry", "missing_decoder_hint",
           "PlaneGeometry", "plane_geometry"]

_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, EOFError, OSError, struct.error, zlib.error, NotImplementedError, AttributeError, OverflowError, UnicodeError, RuntimeError, StopIteration)
_MONO = ("MONOCHROME1", "MONOCHROME2")
_COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LAT_VIEWS = {"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LLO", "RLO"}
_UID_IN_TEXT = re.compile(r"\d+(?:\.\d+){4,}")
# what numpy / pydicom raise on nonsense header values (UFuncTypeError is a TypeError)
_VALUE_ERRORS = (*_PARSE_ERRORS, ZeroDivisionError, FloatingPointError, MemoryError)


class _RedactValues(logging.Filter):
    """pydicom logs warnings that quote element values (names, IDs, UIDs); redact the quoted parts."""

    _QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._QUOTED.sub("'<redacted>'", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _RedactValues) for f in logger.filters):
        logger.addFilter(_RedactValues())


_install_log_redaction()


def missing_decoder_hint(ts_uid: str) -> str:
    """Which package would decode a transfer syntax (for the error message)."""
    from pydicom import uid as u

    libjpeg = "install pylibjpeg and pylibjpeg-libjpeg (pip install pylibjpeg pylibjpeg-libjpeg)"
    openjpeg = "install pylibjpeg and pylibjpeg-openjpeg (pip install pylibjpeg pylibjpeg-openjpeg)"
    hints = {
        u.JPEGLSLossless: libjpeg + " or pyjpegls",
        u.JPEGLSNearLossless: libjpeg + " or pyjpegls",
        u.JPEGLossless: libjpeg,
        u.JPEGLosslessSV1: libjpeg,
        u.JPEGExtended12Bit: libjpeg,
        u.JPEGBaseline8Bit: "install Pillow or " + libjpeg,
        u.JPEG2000: openjpeg,
        u.JPEG2000Lossless: openjpeg,
        u.HTJ2K: openjpeg,
        u.HTJ2KLossless: openjpeg,
        u.HTJ2KLosslessRPCL: openjpeg,
        u.RLELossless: "install pylibjpeg-rle (pip install pylibjpeg pylibjpeg-rle)",
    }
    return hints.get(ts_uid, "no Python decoder exists for it; export the images as uncompressed DICOM or PNG")


def parse_dicom(data: bytes, name: str) -> Any:
    """Parse bytes into a pydicom Dataset with every element converted, or raise a one-line error.

    pydicom's own warnings (which can quote identifying values) are recorded, not shown.
    """
    import pydicom
    from pydicom.errors import BytesLengthException, InvalidDicomError

    bare = not (len(data) >= 132 and data[128:132] == b"DICM")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=bare)
            for _elem in ds.iterall():  # force lazy conversion now, inside this guard
                pass
            for _elem in getattr(ds, "file_meta", None) or []:
                pass
            if not hasattr(ds, "file_meta") or "TransferSyntaxUID" not in ds.file_meta:
                from pydicom.dataset import FileMetaDataset
                from pydicom.uid import ImplicitVRLittleEndian

                meta = getattr(ds, "file_meta", None) or FileMetaDataset()
                meta.TransferSyntaxUID = ImplicitVRLittleEndian
                ds.file_meta = meta
        except (InvalidDicomError, BytesLengthException) as exc:
            raise CorruptFileError("not a valid DICOM file (the header does not parse); re-export or re-copy it", name) from exc
        except _PARSE_ERRORS as exc:
            if isinstance(exc, EOFError) or "end of file" in str(exc).lower() or "truncat" in str(exc).lower():
                raise TruncatedFileError("truncated DICOM file: the data ends inside the header; re-copy it", name) from exc
            raise CorruptFileError(f"corrupt DICOM header ({type(exc).__name__}); re-export or re-copy it", name) from exc
    return ds


def orientation_of(iop: Any) -> str | None:
    """``sagittal`` | ``coronal`` | ``axial`` from ImageOrientationPatient (the slice normal's main axis)."""
    try:
        values = [float(v) for v in iop]
    except (TypeError, ValueError):
        return None
    if len(values) != 6:
        return None
    normal = np.cross(values[:3], values[3:])
    if not np.any(normal):
        return None
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def _first_item(ds: Any, *path: str) -> Any:
    """Item at SharedFunctionalGroupsSequence[0].<Seq>[0] (or the first per-frame group's), else None."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        item = ds
        try:
            item = ds[groups].value[0]
            for key in path:
                item = item[key].value[0]
            return item
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            continue
    return None


def _flatten_enhanced(ds: Any, notes: list[str] | None = None) -> None:
    """Enhanced multi-frame files keep window, rescale and spacing in functional groups; lift them up."""
    lifts = {
        ("FrameVOILUTSequence",): ("WindowCenter", "WindowWidth", "VOILUTFunction"),
        ("PixelValueTransformationSequence",): ("RescaleSlope", "RescaleIntercept", "RescaleType"),
        ("PixelMeasuresSequence",): ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"),
        ("PlaneOrientationSequence",): ("ImageOrientationPatient",),
    }
    for path, keywords in lifts.items():
        if all(k in ds for k in keywords[:1]):
            continue
        item = _first_item(ds, *path)
        if item is None:
            continue
        for keyword in keywords:
            if keyword in item and keyword not in ds:
                try:
                    elem = item[keyword]
                    if elem.VR in ("OB", "OW", "UN", "SQ") or isinstance(elem.value, (bytes, bytearray)):
                        raise ValueError("binary-encoded")
                    setattr(ds, keyword, elem.value)
                except _VALUE_ERRORS:
                    if notes is not None:
                        notes.append(f"invalid {keyword} in the functional groups ignored")


def _spacing(ds: Any) -> tuple[tuple[float, float] | None, str | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is None:
            continue
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return (row, col), keyword
    return None, None


def _view(ds: Any) -> str | None:
    view_position = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view_position in ("AP", "PA"):
        return "ap"
    if view_position in _LAT_VIEWS:
        return "lat"
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in ("MR", "CT"):
        orientation = orientation_of(ds.get("ImageOrientationPatient"))
        if orientation is None:
            description = str(ds.get("SeriesDescription", "") or "").upper()
            orientation = "sagittal" if "SAG" in description else "axial" if re.search(r"\bAX|TRA", description) else None
        if orientation:
            prefix = "mri" if modality == "MR" else "ct"
            return f"{prefix}_{ {'sagittal': 'sag', 'axial': 'ax', 'coronal': 'cor'}[orientation] }"
    return None


def _check_decodable(ds: Any, name: str) -> None:
    """Pixel data present, photometric supported, a decoder installed: all decided before decoding."""
    from pydicom.pixels import get_decoder

    if not any(k in ds for k in _PIXEL_KEYWORDS):
        what = uid_name(ds.get("SOPClassUID")) if "SOPClassUID" in ds else ""
        kind = f" ({what})" if what and not what.startswith("(") else ""
        raise MissingPixelDataError(f"DICOM file without pixel data{kind}: it holds no image; choose an image file from the study", name)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in _MONO + _COLOR:
        shown = photometric or "(missing)"
        raise UnsupportedPhotometricError(
            f"unsupported PhotometricInterpretation {shown}; supported: MONOCHROME1, MONOCHROME2, RGB, YBR_*, PALETTE COLOR", name
        )
    ts = _transfer_syntax(ds)
    if ts is None:
        raise CorruptFileError("the file meta names an unknown transfer syntax (corrupt header?); re-export the file", name)
    if "PixelData" in ds and ts.is_compressed:
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise UnsupportedTransferSyntaxError(f"transfer syntax {ts.name} is not supported: {missing_decoder_hint(ts)}", name) from None
        if not _decoder_available(decoder):
            raise UnsupportedTransferSyntaxError(f"no installed decoder for transfer syntax {ts.name}: {missing_decoder_hint(ts)}", name)


def _transfer_syntax(ds: Any) -> Any:
    """The file's TransferSyntaxUID as a pydicom UID, or None when empty or not a transfer syntax.

    Why: a garbage value arrives as a plain ``str`` (or bytes) and pydicom's decoders then fail on
    ``.is_transfer_syntax``; a valid one is written back as a UID so they work.
    """
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    raw = meta.get("TransferSyntaxUID") if meta is not None else None
    text = str(getattr(raw, "value", raw) or "").strip().rstrip("\x00")
    if not text or len(text) > 64 or not re.fullmatch(r"[0-9.]+", text):
        return None
    ts = UID(text)
    if not ts.is_transfer_syntax:
        return None
    meta.TransferSyntaxUID = ts
    return ts


_JPEG_SOF = frozenset([0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7])


def codestream_size(fragment: bytes) -> tuple[int, int] | None:
    """(width, height) a JPEG / JPEG-LS / JPEG 2000 codestream declares, read from its header only; None if unknown."""
    head = bytes(fragment[:65536])
    j2k = head.find(b"\xff\x4f\xff\x51")
    if j2k >= 0 and (j2k == 0 or head.startswith(b"\x00\x00\x00\x0cjP")):
        siz = head[j2k + 4 : j2k + 4 + 20]
        if len(siz) < 20:
            return None
        _lsiz, _rsiz, xsiz, ysiz, xo, yo = struct.unpack(">HHIIII", siz)
        return max(xsiz - xo, 0), max(ysiz - yo, 0)
    if not head.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(head[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF:
            body = head[pos + 4 : pos + 9]
            if len(body) < 5:
                return None
            return int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big")
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


def _check_codestreams(ds: Any, name: str, rows: int, cols: int, frames: int, max_pixels: int | None) -> None:
    """Every embedded codestream's own declared size, before any decoding: it must be under the pixel
    limit and match Rows × Columns (a header saying 64 rows may carry a 20000² JPEG)."""
    from pydicom.encaps import generate_fragments

    ts = ds.file_meta.TransferSyntaxUID
    if "PixelData" not in ds or not ts.is_compressed:
        return
    seen = 0
    try:
        for fragment in generate_fragments(ds.PixelData):
            size = codestream_size(fragment)
            if size is None:
                continue
            check_frame_size(name, size[0], size[1], seen, frames, max_pixels=max_pixels)
            if size[1] and (size[0], size[1]) != (cols, rows):
                raise CorruptFileError(
                    f"embedded image {seen + 1} is {size[0]}×{size[1]} but the header says {cols}×{rows}; re-export the file", name)
            seen += 1
    except SpineInputError:  # our own refusal (a SpineInputError is a ValueError too): keep its message
        raise
    except (ValueError, TypeError, struct.error, EOFError, KeyError, IndexError) as exc:
        raise CorruptFileError(f"encapsulated pixel data does not parse ({type(exc).__name__}); re-export or re-copy it", name) from exc


def _decoder_available(decoder: Any) -> bool:
    """Separate function so tests can simulate a machine without the pylibjpeg plugins."""
    return bool(decoder.is_available)


def _decode(ds: Any, name: str) -> np.ndarray:
    """Stored values, (F, H, W[, 3]); colour converted to RGB by pydicom."""
    from pydicom.uid import RLELossless
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            if ds.file_meta.TransferSyntaxUID == RLELossless:
                # pydicom's own RLE decoder: pylibjpeg-rle panics (and prints a Rust backtrace) on corrupt data
                ds.pixel_array_options(decoding_plugin="pydicom")
            arr = ds.pixel_array
        except MemoryError as exc:
            raise CorruptFileError("image too large to decode in memory", name) from exc
        except BaseException as exc:  # noqa: BLE001 - narrowed just below
            # Rust decoders (pylibjpeg-rle) raise pyo3's PanicException, a BaseException, on corrupt data
            if not isinstance(exc, (*_PARSE_ERRORS, RuntimeError)) and type(exc).__name__ != "PanicException":
                raise
            text = str(exc).lower()
            if "less than expected" in text or "length" in text and ("match" in text or "expected" in text) or "truncat" in text or isinstance(exc, EOFError):
                raise TruncatedFileError("truncated DICOM file: the pixel data is shorter than the header declares; re-copy it", name) from exc
            ts = ds.file_meta.TransferSyntaxUID
            raise CorruptFileError(
                f"DICOM pixel data ({ts.name}) does not decode with the installed decoders ({type(exc).__name__}); re-export or re-copy it", name
            ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[None]
    if samples == 1 and arr.ndim != 3 or samples > 1 and arr.ndim != 4:
        raise CorruptFileError(f"DICOM pixel data has unexpected shape {arr.shape}", name)
    return arr


@dataclass
class DicomFrames:
    """One file's pixels after Modality and VOI LUTs, before scaling to [0, 1] (for series-wide scaling)."""

    values: np.ndarray  # float32 (F, H, W)
    low: float  # value that maps to 0
    high: float  # value that maps to 1
    windowed: bool  # True when a VOI LUT / window fixed low/high (else they are the data's min/max)
    invert: bool  # MONOCHROME1
    window: tuple[float, float] | None
    value_range: tuple[float, float]  # original values (after the Modality LUT) shown as black and white
    bits: int
    photometric: str
    spacing: tuple[float, float] | None
    spacing_source: str | None
    view: str | None
    modality: str | None
    header: dict[str, Any]
    name: str
    series_uid: str
    study_uid: str
    patient_key: str  # pseudonym of PatientID (groups a patient's files without revealing the ID)
    series_description: str
    series_number: int | None
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    slice_thickness_mm: float | None
    notes: list[str] = field(default_factory=list)

    def scaled(self, low: float | None = None, high: float | None = None) -> np.ndarray:
        """float32 (F, H, W) in [0, 1], MONOCHROME1 inverted last."""
        lo = self.low if low is None else low
        hi = self.high if high is None else high
        out = scale_to_unit(self.values, lo, hi)  # no float32 overflow on a range like ±3e38
        if self.invert:
            out = 1.0 - out
        return out.astype(np.float32, copy=False)


def _display_values(ds: Any, raw: np.ndarray, notes: list[str]) -> tuple[np.ndarray, float, float, bool, tuple[float, float] | None]:
    """Modality LUT then VOI LUT / window; returns values and the range that maps to [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if raw.ndim == 4:  # colour: no LUTs apply; luminance of RGB
        luma = raw[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        top = float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else float(luma.max() or 1.0)
        return luma.astype(np.float32), 0.0, top, True, None
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        values, rescale_ok = _modality_values(ds, raw, notes, apply_modality_lut)
        values = _finite_values(values, notes)
        has_window = "WindowCenter" in ds and "WindowWidth" in ds
        if not rescale_ok and ("VOILUTSequence" in ds or has_window):
            notes.append("VOI window/LUT ignored: it is in rescaled units and the rescale was invalid")
        elif "VOILUTSequence" in ds or has_window:
            try:
                windowed = apply_voi_lut(values, ds).astype(np.float32, copy=False)
                window = None
                if "VOILUTSequence" in ds:
                    low, high = float(windowed.min()), float(windowed.max())
                else:
                    center = float(_first(ds.WindowCenter))
                    width = float(_first(ds.WindowWidth))
                    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
                        raise ValueError("window not finite or not positive")
                    probe = apply_voi_lut(np.array([center - width, center + width], dtype=np.float64), ds)
                    low, high = float(probe.min()), float(probe.max())
                    window = (center, width)
                if high > low and np.isfinite(low) and np.isfinite(high) and np.isfinite(windowed).all():
                    return windowed, low, high, True, window
                notes.append("VOI window gives a constant or non-finite image; ignored")
            except _VALUE_ERRORS:
                notes.append("invalid VOI window/LUT in the header; ignored (scaled min-max instead)")
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return values, low, high, False, None


def _finite_number(value: Any) -> float | None:
    """One finite number from a header value (DS string, float, one-item list), else None."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        if len(value) != 1:
            return None
        value = value[0]
    if isinstance(value, (bytes, bytearray)):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if np.isfinite(out) else None


def _modality_values(ds: Any, raw: np.ndarray, notes: list[str], apply_modality_lut: Any) -> tuple[np.ndarray, bool]:
    """Stored values → modality values; an invalid Modality LUT or rescale is ignored with a note.

    Returns (values, rescale_ok): False when the header's rescale/LUT was unusable, since a window
    given in rescaled units then no longer fits the values.
    """
    values = raw.astype(np.float32, copy=False)
    if "ModalityLUTSequence" in ds:
        try:
            out = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
            if out.shape != raw.shape:
                raise ValueError("LUT output shape")
            return out, True
        except _VALUE_ERRORS:
            notes.append("invalid Modality LUT in the header ignored (stored values used)")
            return values, False
    if "RescaleSlope" not in ds and "RescaleIntercept" not in ds:
        return values, True
    slope = _finite_number(ds.get("RescaleSlope", 1.0)) if "RescaleSlope" in ds else 1.0
    intercept = _finite_number(ds.get("RescaleIntercept", 0.0)) if "RescaleIntercept" in ds else 0.0
    if slope is None or intercept is None or slope == 0:
        notes.append("invalid RescaleSlope/RescaleIntercept in the header ignored (stored values used)")
        return values, False
    with np.errstate(over="ignore", invalid="ignore"):
        out = values * np.float32(slope) + np.float32(intercept)
    return out.astype(np.float32, copy=False), True


def _finite_values(values: np.ndarray, notes: list[str]) -> np.ndarray:
    """NaN/inf pixels (float pixel data, an overflowing rescale) replaced by the finite extremes, with a note."""
    finite = np.isfinite(values)
    if finite.all():
        return values
    if not finite.any():
        raise CorruptFileError("the pixel data holds no finite value (all NaN or infinite); re-export the file")
    lo, hi = float(values[finite].min()), float(values[finite].max())
    notes.append(f"{int(values.size - finite.sum())} NaN/infinite pixel value(s) replaced by the nearest finite extreme")
    return np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo).astype(np.float32, copy=False)


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0]
    return value


def _safe_name(name: str, identifiers: set[str], modality: str | None, sop_uid: str) -> str:
    """The file's base name, unless it carries an identifying value or a UID (then a neutral one)."""
    base = PurePath(name).name or "image.dcm"
    lowered = base.lower()
    if _UID_IN_TEXT.search(base) or any(len(v) >= 3 and v.lower() in lowered for v in identifiers):
        tag = remap_uid(sop_uid).rsplit(".", 1)[-1][-8:] if sop_uid else "0"
        return f"{(modality or 'dicom').lower()}-{tag}.dcm"
    return base


def _float_tuple(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None or isinstance(value, (bytes, bytearray, str)):
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def slice_geometry(ds: Any) -> tuple[tuple[float, float, float] | None, tuple[float, ...] | None, int | None]:
    """(ImagePositionPatient, ImageOrientationPatient, InstanceNumber) of a parsed header, None where absent or
    not numeric: what ``spine_models.io.study.slice_order`` orders a series by, read one way for the pixel
    reader and the header-only scan alike."""
    try:
        inst = ds.get("InstanceNumber")
        instance_number = int(inst) if inst not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        instance_number = None
    position = _float_tuple(ds.get("ImagePositionPatient"), 3)
    return position, _float_tuple(ds.get("ImageOrientationPatient"), 6), instance_number  # type: ignore[return-value]


class PlaneGeometry(NamedTuple):
    """Where an image plane sits in the patient: the first pixel's centre (mm), the row and column direction
    cosines, the pixel spacing (row, column) in mm and the size (rows, columns)."""

    origin: tuple[float, float, float]
    row_dir: tuple[float, float, float]  # direction of increasing column index
    col_dir: tuple[float, float, float]  # direction of increasing row index
    spacing: tuple[float, float]
    shape: tuple[int, int]


def plane_geometry(ds: Any) -> PlaneGeometry | None:
    """The plane of a parsed single-frame header (ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
    Rows, Columns); None when any is absent or not numeric. Why: the MRI page draws where the axial slices cut
    the sagittal frame, which needs both planes in patient coordinates."""
    position, orientation, _ = slice_geometry(ds)
    spacing = _float_tuple(ds.get("PixelSpacing"), 2)
    try:
        shape = (int(ds.get("Rows")), int(ds.get("Columns")))
    except (TypeError, ValueError):
        return None
    if position is None or orientation is None or spacing is None or min(shape) < 1 or min(spacing) <= 0:
        return None
    return PlaneGeometry(position, tuple(orientation[:3]), tuple(orientation[3:]), spacing, shape)  # type: ignore[arg-type]


def read_dicom_frames(
    data: bytes,
    name: str,
    *,
    max_pixels: int | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    identifiers_out: set[str] | None = None,
) -> DicomFrames:
    """Parse, check limits on the declared size, decode and apply the LUTs of one DICOM file.

    ``identifiers_out`` (optional) receives the file's identifying values so a caller can scrub
    its own strings (e.g. a study folder name); never store or print them.
    """
    with warnings.catch_warnings(record=True):  # pydicom warnings may quote identifying values
        warnings.simplefilter("always")
        return _frames_from_dataset(parse_dicom(data, name), name, max_pixels, min_size, identifiers_out)


def read_dicom_stored(
    data: bytes, name: str, *, max_pixels: int | None = None, min_size: int = DEFAULT_MIN_SIZE
) -> tuple[Any, np.ndarray]:
    """(parsed dataset, stored values (F, H, W[, 3])) of one DICOM file, behind every guard of
    :func:`read_dicom_frames` (parse, photometric and decoder checks, declared and embedded sizes), no LUT applied.

    Why: an export that copies a frame's stored values unchanged (``data.mri.export_frames``) must refuse a bad
    file in the same one line as every other reader, named ``name`` (or a neutral name when it carries an
    identifying value); the dataset is returned for copying its non-identifying header.
    """
    with warnings.catch_warnings(record=True):  # pydicom warnings may quote identifying values
        warnings.simplefilter("always")
        ds = parse_dicom(data, name)
        modality = str(ds.get("Modality", "") or "").strip().upper() or None
        safe = _checked_before_decoding(ds, name, collect_identifiers(ds), modality, max_pixels, min_size)
        return ds, _decode(ds, safe)


def _checked_before_decoding(ds: Any, name: str, identifiers: set[str], modality: str | None, max_pixels: int | None,
                             min_size: int) -> str:
    """The file's safe name, after every check that must pass before decoding (pixels present, photometric,
    decoder installed, declared and embedded sizes)."""
    safe = _safe_name(name, identifiers, modality, str(ds.get("SOPInstanceUID", "") or ""))
    _check_decodable(ds, safe)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptFileError("DICOM header lacks a valid Rows/Columns/NumberOfFrames", safe) from exc
    check_declared_size(safe, cols, rows, frames, max_pixels=max_pixels, min_size=min_size)
    _check_codestreams(ds, safe, rows, cols, frames, max_pixels)
    return safe


def _frames_from_dataset(
    ds: Any, name: str, max_pixels: int | None, min_size: int, identifiers_out: set[str] | None
) -> DicomFrames:
    identifiers = collect_identifiers(ds)
    if identifiers_out is not None:
        identifiers_out.update(identifiers)
    modality = str(ds.get("Modality", "") or "").strip().upper() or None
    safe = _checked_before_decoding(ds, name, identifiers, modality, max_pixels, min_size)
    notes: list[str] = []
    _flatten_enhanced(ds, notes)
    raw = _decode(ds, safe)
    try:
        values, low, high, windowed, window = _display_values(ds, raw, notes)
    except CorruptFileError as exc:
        raise CorruptFileError(str(exc), safe) from exc
    if window is not None:
        value_range = (window[0] - window[1] / 2.0, window[0] + window[1] / 2.0)
    elif windowed and "VOILUTSequence" in ds:
        value_range = (float(values.min()), float(values.max()))
    else:
        value_range = (low, high)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    spacing, source = _spacing(ds)
    bits = next((int(b) for b in (_finite_number(ds.get(k)) for k in ("BitsStored", "BitsAllocated")) if b and 1 <= b <= 64), 8)
    position, orientation, instance_number = slice_geometry(ds)
    try:
        number = ds.get("SeriesNumber")
        series_number = int(number) if number not in (None, "") else None
        thickness = _finite_number(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "") else None
    except (TypeError, ValueError, OverflowError):
        series_number = None
        thickness = None
        notes.append("non-numeric SeriesNumber/SliceThickness ignored")
    if instance_number is None and ds.get("InstanceNumber") not in (None, ""):
        notes.append("non-numeric InstanceNumber ignored")
    return DicomFrames(
        values=values,
        low=low,
        high=high,
        windowed=windowed,
        invert=photometric == "MONOCHROME1",
        window=window,
        value_range=value_range,
        bits=bits,
        photometric=photometric,
        spacing=spacing,
        spacing_source=source,
        view=_view(ds),
        modality=modality,
        header=header_dict(ds, identifiers),
        name=safe,
        series_uid=remap_uid(str(ds.get("SeriesInstanceUID", "") or "")),
        study_uid=remap_uid(str(ds.get("StudyInstanceUID", "") or "")),
        patient_key=pseudonym(str(ds.get("PatientID", "") or "")),
        series_description=scrub_text(str(ds.get("SeriesDescription", "") or ""), identifiers),
        series_number=series_number,
        instance_number=instance_number,
        position=position,
        orientation=orientation,
        slice_thickness_mm=thickness,
        notes=notes,
    )


def read_dicom(data: bytes, name: str, *, max_pixels: int | None = None, min_size: int = DEFAULT_MIN_SIZE) -> Radiograph:
    """One DICOM file → Radiograph (first frame in ``pixels``, all in ``volume`` when multi-frame)."""
    f = read_dicom_frames(data, name, max_pixels=max_pixels, min_size=min_size)
    volume = np.ascontiguousarray(f.scaled())
    return Radiograph(
        pixels=volume[0],
        bits=f.bits,
        format="DICOM",
        name=f.name,
        photometric=f.photometric,
        pixel_spacing_mm=f.spacing,
        spacing_source=f.spacing_source,
        view=f.view,
        modality=f.modality,
        frames=int(volume.shape[0]),
        volume=volume if volume.shape[0] > 1 else None,
        value_range=f.value_range if not f.invert else (f.value_range[1], f.value_range[0]),
        window=f.window,
        header=f.header,
        notes=f.notes,
    )
