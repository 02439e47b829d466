"""DICOM study folders and ZIPs → :class:`Study` of :class:`Series` (MRI and CT): the one study reader.

Why: an MRI study arrives as hundreds of single-slice files in arbitrary order and file names.
Slices are grouped by SeriesInstanceUID and ordered by :func:`slice_order`: by their position along
the slice normal (ImagePositionPatient · (row × column cosines)), running the way InstanceNumber
runs; InstanceNumber alone only as the fallback (positions missing or coinciding); file name last.
So frame *k* of a series is the *k*-th slice in space — the frame-selection rules of the MRI study
depend on that order. One bad file is reported in ``problems``, not fatal.

Two depths, one order: :func:`read_study` decodes every slice (de-identified pixels, for display);
:func:`scan_studies` reads headers only (file paths, for choosing frames and for datasets of many
patients). Both number frames by :func:`slice_order`, so the frame the MRI study's rule chooses is the
frame the app shows.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from spine_models.errors import DatasetError, SpineInputError
from spine_models.io._limits import DEFAULT_MIN_SIZE, file_size
from spine_models.io.archive import iter_zip_members
from spine_models.io.deid import SHOW_NAMES_ENV, display_name, remap_uid, scrub_text, show_names as _show_names
from spine_models.io.dicom import DicomFrames, orientation_of, read_dicom_frames, slice_geometry
from spine_models.io.sniff import sniff_format

__all__ = ["Series", "Study", "read_study", "slice_order", "SliceHeader", "SeriesInfo", "StudyInfo", "scan_studies"]


@dataclass(repr=False, eq=False)
class Series:
    """One series: ``pixels`` float32 (F, H, W) in [0, 1], frames in spatial order."""

    uid: str  # de-identified (2.25.<hash>)
    description: str
    pixels: np.ndarray
    instance_numbers: list[int | None]
    pixel_spacing_mm: tuple[float, float] | None
    slice_thickness_mm: float | None
    orientation: str | None  # "sagittal" | "axial" | "coronal" | None
    modality: str | None
    number: int | None = None
    positions: list[tuple[float, float, float] | None] = field(default_factory=list)
    spacing_between_slices_mm: float | None = None
    bits: int = 16
    photometric: str = "MONOCHROME2"
    view: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    file_names: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.pixels.shape[0])

    def frame(self, number: int) -> np.ndarray:
        """1-based frame (the MRI study counts frames from 1)."""
        if not 1 <= number <= self.frames:
            raise SpineInputError(f"frame {number} out of range: series {self.description!r} has frames 1..{self.frames}")
        return self.pixels[number - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "number": self.number,
            "description": self.description,
            "modality": self.modality,
            "orientation": self.orientation,
            "view": self.view,
            "frames": self.frames,
            "height": int(self.pixels.shape[1]),
            "width": int(self.pixels.shape[2]),
            "bits": self.bits,
            "photometric": self.photometric,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "slice_thickness_mm": self.slice_thickness_mm,
            "spacing_between_slices_mm": self.spacing_between_slices_mm,
            "instance_numbers": list(self.instance_numbers),
        }

    def __repr__(self) -> str:
        return f"Series({self.description!r}, {self.modality}, {self.orientation}, frames={self.frames}, {self.pixels.shape[2]}×{self.pixels.shape[1]})"


@dataclass(repr=False, eq=False)
class Study:
    """All readable series of one source (folder or ZIP)."""

    name: str
    series: list[Series]
    uid: str = ""
    patient_key: str = ""  # pseudonym of PatientID: group by it, never shown as an ID
    problems: list[str] = field(default_factory=list)

    def find(self, pattern: str) -> list[Series]:
        """Series whose description matches a case-insensitive regular expression."""
        rx = re.compile(pattern, re.IGNORECASE)
        return [s for s in self.series if rx.search(s.description)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "patient_key": self.patient_key,
            "series": [s.to_dict() for s in self.series],
            "problems": list(self.problems),
        }

    def __repr__(self) -> str:
        return f"Study({self.name!r}, series={[s.description for s in self.series]})"




def _read_files(items: list[tuple[str, Path]], problems: list[str], show: bool) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of each file; one that cannot be read goes to ``problems``."""
    for rel, p in items:
        shown = display_name(rel, show=show)
        try:
            file_size(p, shown)  # an empty file reads as b"" and is counted with the non-DICOM files below
            data = p.read_bytes()
        except SpineInputError as exc:  # not stat'able, over the one-file limit
            problems.append(f"{exc}; skipped")
            continue
        except OSError as exc:
            problems.append(f"{shown}: cannot be read ({exc.strerror or type(exc).__name__}); skipped")
            continue
        yield rel, data


def _folder_files(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root``, sorted; hidden entries skipped, symlinked folders not followed (no loops)."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in files:
            p = Path(folder) / f
            if not f.startswith(".") and p.is_file():
                found.append((p.relative_to(root).as_posix(), p))
    return sorted(found)


def _iter_sources(
    source: str | Path | Iterable[str | Path], problems: list[str], show: bool
) -> tuple[str, Iterator[tuple[str, bytes]]]:
    """(display name, iterator of (relative name, bytes)); unreadable entries are described in ``problems``."""
    if not isinstance(source, (str, Path)):
        paths = [Path(p) for p in source]
        return "files", _read_files([(p.name, p) for p in paths], problems, show)
    path = Path(source)
    shown = display_name(path.name or "study", show=show)
    try:
        if not path.exists():
            raise DatasetError("no such folder or ZIP; check the path", shown)
        if path.is_dir():
            return path.name, _read_files(_folder_files(path), problems, show)
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror or type(exc).__name__}); check the path and permissions", shown) from exc
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return path.stem, iter_zip_members(path, problems=problems)
    return path.name, _read_files([(path.name, path)], problems, show)


class SliceHeader(NamedTuple):
    """What a slice is ordered by (any object with these attributes will do, e.g. DicomFrames)."""

    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance_number: int | None


def _slice_key(f: Any, index: int) -> tuple[float, float, int]:
    pos = f.position
    ori = f.orientation
    if pos is not None and ori is not None:
        normal = np.cross(ori[:3], ori[3:])
        if np.any(normal):
            return (0.0, float(np.dot(pos, normal)), index)
    if f.instance_number is not None:
        return (1.0, float(f.instance_number), index)
    return (2.0, 0.0, index)


def slice_order(slices: Sequence[Any]) -> list[int]:
    """Indices of ``slices`` (each with ``position``, ``orientation``, ``instance_number``) in frame order.

    Primary: ImagePositionPatient projected on the slice normal, in the direction InstanceNumber runs
    (so frame k stays instance k when both agree). Fallback: InstanceNumber, when a slice has no
    position or two share one. Last: the order given (sorted file names). The one rule of the package
    for "frame k of a series".
    """
    keys = [_slice_key(f, i) for i, f in enumerate(slices)]
    if len({k[1] for k in keys if k[0] == 0.0}) < len(slices) and all(f.instance_number is not None for f in slices):
        keys = [(1.0, float(f.instance_number), i) for i, f in enumerate(slices)]  # positions coincide: numbers decide
    order = sorted(range(len(slices)), key=keys.__getitem__)
    numbers = [slices[i].instance_number for i in order]
    if all(k[0] == 0.0 for k in keys) and None not in numbers and len(set(numbers)) == len(numbers) > 1:
        # spatial order decides; its direction follows InstanceNumber so frame k stays instance k
        if float(np.corrcoef(np.arange(len(numbers)), np.asarray(numbers, dtype=float))[0, 1]) < 0:
            order.reverse()
    return order


def _build_series(items: list[DicomFrames], problems: list[str]) -> Series:
    items = [items[i] for i in slice_order(items)]
    shape = items[0].values.shape[1:]
    kept = [f for f in items if f.values.shape[1:] == shape]
    if len(kept) < len(items):
        problems.append(f"series {items[0].series_description!r}: {len(items) - len(kept)} slice(s) of another size skipped")
    if all(f.windowed for f in kept):
        stacks = [f.scaled() for f in kept]
    else:  # one scale for the whole series, so slices stay comparable
        low = min(f.low for f in kept)
        high = max(f.high for f in kept)
        stacks = [f.scaled(low, high) for f in kept]
    pixels = np.ascontiguousarray(np.concatenate(stacks, axis=0), dtype=np.float32)
    instance_numbers: list[int | None] = []
    positions: list[tuple[float, float, float] | None] = []
    for f in kept:
        count = f.values.shape[0]
        instance_numbers.extend([f.instance_number] * count if count == 1 else list(range(1, count + 1)))
        positions.extend([f.position] * count)
    first = kept[0]
    orientation = orientation_of(first.orientation) if first.orientation else None
    gap = None
    if first.orientation and len(kept) > 1 and all(f.position for f in kept):
        normal = np.cross(first.orientation[:3], first.orientation[3:])
        depth = np.array([np.dot(f.position, normal) for f in kept])  # type: ignore[arg-type]
        steps = np.diff(depth)
        if steps.size and np.all(np.isfinite(steps)):
            gap = float(np.round(np.median(np.abs(steps)), 4))
    return Series(
        uid=first.series_uid,
        description=first.series_description,
        pixels=pixels,
        instance_numbers=instance_numbers,
        pixel_spacing_mm=first.spacing,
        slice_thickness_mm=first.slice_thickness_mm,
        orientation=orientation,
        modality=first.modality,
        number=first.series_number,
        positions=positions,
        spacing_between_slices_mm=gap,
        bits=first.bits,
        photometric=first.photometric,
        view=first.view,
        header=dict(first.header),
        file_names=[f.name for f in kept],
    )


def read_study(
    source: str | Path | Iterable[str | Path],
    *,
    max_pixels: int | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    show_names: bool | None = None,
) -> Study:
    """Read a folder (recursively), a ZIP, or a list of DICOM files into a de-identified Study.

    Non-DICOM files, DICOM files without pixels (DICOMDIR, reports), unreadable files and ZIP
    members are skipped and listed in ``problems`` (named by neutral ids unless ``show_names``); a
    source with no readable image raises :class:`DatasetError`.
    """
    show = _show_names(show_names)
    problems: list[str] = []
    display, members = _iter_sources(source, problems, show)
    identifiers: set[str] = set()
    groups: dict[str, list[DicomFrames]] = {}
    skipped_other = 0
    for rel, data in members:
        fmt = sniff_format(data[:4096])
        if fmt != "DICOM":
            skipped_other += 1
            continue
        try:
            frames = read_dicom_frames(data, display_name(rel, show=show), max_pixels=max_pixels, min_size=min_size,
                                       identifiers_out=identifiers)
        except SpineInputError as exc:
            problems.append(str(exc))
            continue
        key = frames.series_uid or f"{frames.series_number}:{frames.series_description}"
        groups.setdefault(key, []).append(frames)
    if skipped_other:
        problems.append(f"{skipped_other} non-DICOM file(s) skipped")
    shown = display_name(PurePath(display).name or "study", show=show)
    if not groups:
        detail = f" ({scrub_text(problems[0], identifiers)[:160]})" if problems else ""
        raise DatasetError(f"no readable DICOM image found{detail}; point to a DICOM study folder or ZIP", shown)
    series = []
    for items in groups.values():
        try:
            series.append(_build_series(items, problems))
        except (ValueError, TypeError, IndexError, MemoryError) as exc:  # slices that cannot be stacked into one volume
            problems.append(f"a series of {len(items)} file(s) could not be assembled ({type(exc).__name__}); skipped")
    if not series:
        raise DatasetError("no series could be assembled from its DICOM files; re-export the study", shown)
    series.sort(key=lambda s: (s.number if s.number is not None else math.inf, s.description, s.uid))
    first = next(iter(groups.values()))[0]
    name = scrub_text(PurePath(display).name, identifiers) if display and show else ""
    if not show or name != PurePath(display).name or re.search(r"\d+(?:\.\d+){4,}", name):
        name = f"study-{remap_uid(first.study_uid).rsplit('.', 1)[-1][-8:] if first.study_uid else 'anon'}"
    problems = [scrub_text(p, identifiers) for p in problems]  # file paths may carry names
    return Study(name=name or "study", series=series, uid=first.study_uid, patient_key=first.patient_key, problems=problems)


# ---------------------------------------------------------------------------------------------
# headers only: file paths per frame (choosing frames, datasets of many studies)
@dataclass
class SeriesInfo:
    """One series, headers only: per frame its file, the frame inside that file and the InstanceNumber (0 when
    absent), in the same frame order as :func:`read_study` (:func:`slice_order`)."""

    description: str
    series_uid: str
    files: list[Path]
    instance_numbers: list[int]
    frame_index: list[int]  # frame inside each file (0 for single-frame files)
    orientation: list[float] | None
    folder: Path

    @property
    def n_frames(self) -> int:
        return len(self.files)


@dataclass
class StudyInfo:
    study_id: str  # the study folder's name (never a DICOM identifier)
    root: Path
    series: list[SeriesInfo]
    problems: list[str] = field(default_factory=list)  # files under ``root`` left out, by neutral name


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def _series_info(description: str, uid: str, entries: list[tuple[Path, SliceHeader, int, tuple]], orientation: Any,
                 folder: Path) -> SeriesInfo:
    """Frames of one series' files in :func:`slice_order`; files of another size than the first are left out,
    as :func:`read_study` leaves them out, so frame k is the same slice at both depths."""
    entries = [entries[i] for i in slice_order([e[1] for e in entries])]
    entries = [e for e in entries if e[3] == entries[0][3]]
    files, numbers, index = [], [], []
    for path, head, n_frames, _shape in entries:
        for k in range(n_frames):
            files.append(path)
            numbers.append(head.instance_number or 0)
            index.append(k)
    return SeriesInfo(description, uid, files, numbers, index, None if orientation is None else list(orientation), folder)


def _scan_header(path: Path, shown: str) -> Any:
    """One file's header (no pixels), every value converted, or a one-line SpineInputError naming it ``shown``."""
    import pydicom

    file_size(path, shown)  # stat'able and within the one-file limit, as every reader checks
    # pydicom's warnings quote header values (identifying ones too): recorded, never printed
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for _elem in ds.iterall():  # convert every value now, inside this guard (lazy conversion raises later)
                pass
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types (NotImplementedError, BytesLengthException...) on bad bytes
            raise SpineInputError(f"is not a readable DICOM file ({type(exc).__name__})", shown) from exc
    return ds


def scan_studies(root: str | Path, *, problems: list[str] | None = None, show_names: bool | None = None) -> list[StudyInfo]:
    """Every DICOM study under ``root`` (headers only), grouped by StudyInstanceUID, frames in slice order.

    The study id is the name of the folder that holds all of that study's series folders, so
    DIR/<patient>/<series>/*.dcm gives the patient folder name; ``root`` itself when it is one study.
    A file whose header does not parse, or whose declared size :func:`read_study` would refuse (too small,
    too large), is left out and described in ``problems`` (the list passed, and the ``problems`` of the study
    whose folder holds it), named by its neutral id unless ``show_names``; the rest of the scan carries on.
    Raises :class:`DatasetError` only when no file at all can be used.
    """
    from spine_models.io._limits import check_declared_size

    show = _show_names(show_names)
    root = Path(root)
    if not root.exists():
        raise DatasetError("no such file or folder; pass a DICOM study folder", root)
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and _is_dicom(p))
    if not paths:
        raise DatasetError("holds no DICOM files (.dcm); pass a folder of MRI studies", root)
    studies: dict[str, dict[str, dict[str, Any]]] = {}
    left_out: list[tuple[Path, str]] = []
    for path in paths:
        shown = display_name(path.absolute().as_posix(), show=show)  # one id per file, whichever folder is scanned
        try:
            ds = _scan_header(path, shown)
        except SpineInputError as exc:
            hint = "" if show else f"; env {SHOW_NAMES_ENV}=1 shows its name"
            left_out.append((path, f"{exc}; skipped (fix or remove it{hint})"))
            continue
        with warnings.catch_warnings(record=True):  # as in _scan_header: pydicom may quote values when they are read
            warnings.simplefilter("always")
            try:
                position, orientation, instance = slice_geometry(ds)
                n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
                shape = (getattr(ds, "Rows", None), getattr(ds, "Columns", None))
                check_declared_size(shown, int(shape[1] or 0), int(shape[0] or 0), n_frames)
            except SpineInputError as exc:  # read_study refuses it before decoding: not a frame here either
                left_out.append((path, f"{exc}; skipped"))
                continue
            except (TypeError, ValueError, OverflowError) as exc:
                left_out.append((path, f"{shown}: Rows/Columns/NumberOfFrames are not numbers ({type(exc).__name__}); skipped"))
                continue
            st = str(getattr(ds, "StudyInstanceUID", "") or path.parent.parent)
            se = str(getattr(ds, "SeriesInstanceUID", "") or path.parent)
            entry = studies.setdefault(st, {}).setdefault(se, {
                "description": str(getattr(ds, "SeriesDescription", "") or ""), "entries": [],
                "orientation": orientation, "folder": path.parent})
        entry["entries"].append((path, SliceHeader(position, orientation, instance), n_frames, shape))
    lines = [line for _path, line in left_out]
    if problems is not None:
        problems.extend(lines)
    if not studies:
        first = f" (first: {lines[0][:160]})" if lines else ""
        raise DatasetError(f"none of its {len(paths)} DICOM file(s) can be used{first}; pass a folder of readable DICOM studies", root)
    out: list[StudyInfo] = []
    for series in studies.values():
        infos = [_series_info(e["description"], se, e["entries"], e["orientation"], e["folder"]) for se, e in series.items()]
        folders = [e["folder"] for e in series.values()]
        common = Path(*Path(folders[0]).parts[: len(_common_parts(folders))]) if folders else root
        if len(folders) == 1 and common == folders[0] and common != root:
            common = common.parent  # one series: the study folder is its parent
        if root.is_file() or not str(common).startswith(str(root)):
            common = root if root.is_dir() else root.parent
        infos.sort(key=lambda s: (s.folder.as_posix(), s.description))
        out.append(StudyInfo(common.name, common, infos))
    out.sort(key=lambda s: s.root.as_posix())
    for path, line in left_out:  # each left-out file to the innermost study folder that holds it
        holders = [s for s in out if path.is_relative_to(s.root)]
        if holders:
            max(holders, key=lambda s: len(s.root.parts)).problems.append(line)
    return out


def _common_parts(folders: Sequence[Path]) -> tuple[str, ...]:
    parts = [Path(f).parts for f in folders]
    common: list[str] = []
    for group in zip(*parts):
        if all(g == group[0] for g in group):
            common.append(group[0])
        else:
            break
    return tuple(common)
