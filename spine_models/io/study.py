"""DICOM study folders and ZIPs → :class:`Study` of :class:`Series` (MRI and CT).

Why: an MRI study arrives as hundreds of single-slice files in arbitrary order and file names.
Slices are grouped by (de-identified) SeriesInstanceUID and ordered by their position along the
slice normal (ImagePositionPatient · (row × column cosines)), else InstanceNumber, else file name, so
frame *k* of a series is the *k*-th slice in space — the frame-selection rules of the MRI study
depend on that order. One bad file is reported in ``problems``, not fatal.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Iterable, Iterator

import numpy as np

from spine_models.errors import DatasetError, SpineInputError
from spine_models.io._limits import DEFAULT_MIN_SIZE
from spine_models.io.archive import iter_zip_members
from spine_models.io.deid import display_name, remap_uid, scrub_text, show_names as _show_names
from spine_models.io.dicom import DicomFrames, orientation_of, read_dicom_frames
from spine_models.io.sniff import sniff_format

__all__ = ["Series", "Study", "read_study"]


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


_MAX_FILE_BYTES = 2 * 1024**3  # one file of a study, as read_image's limit


def _read_files(items: list[tuple[str, Path]], problems: list[str], show: bool) -> Iterator[tuple[str, bytes]]:
    """(relative name, bytes) of each file; one that cannot be read goes to ``problems``."""
    for rel, p in items:
        try:
            size = p.stat().st_size
            if size > _MAX_FILE_BYTES:
                problems.append(f"{display_name(rel, show=show)}: file is {size / 1024**3:.1f} GB, above the 2 GB limit; skipped")
                continue
            data = p.read_bytes()
        except OSError as exc:
            problems.append(f"{display_name(rel, show=show)}: cannot be read ({exc.strerror or type(exc).__name__}); skipped")
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


def _slice_key(f: DicomFrames, index: int) -> tuple[float, float, int]:
    pos = f.position
    ori = f.orientation
    if pos is not None and ori is not None:
        normal = np.cross(ori[:3], ori[3:])
        if np.any(normal):
            return (0.0, float(np.dot(pos, normal)), index)
    if f.instance_number is not None:
        return (1.0, float(f.instance_number), index)
    return (2.0, 0.0, index)


def _build_series(items: list[DicomFrames], problems: list[str]) -> Series:
    keys = [_slice_key(f, i) for i, f in enumerate(items)]
    if len({k[1] for k in keys if k[0] == 0.0}) < len(items) and all(f.instance_number is not None for f in items):
        keys = [(1.0, float(f.instance_number), i) for i, f in enumerate(items)]  # positions coincide: numbers decide
    order = sorted(range(len(items)), key=lambda i: (keys[i], items[i].name))
    items = [items[i] for i in order]
    numbers = [f.instance_number for f in items]
    if all(k[0] == 0.0 for k in keys) and None not in numbers and len(set(numbers)) == len(numbers) > 1:
        # spatial order decides; its direction follows InstanceNumber so frame k stays instance k
        if float(np.corrcoef(np.arange(len(numbers)), np.asarray(numbers, dtype=float))[0, 1]) < 0:
            items.reverse()
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
