"""The MRI study's slice selection, naming and ROI; the MRI dataset adapter; frame export.

Why: the MRI disc study did not feed whole volumes to its classifiers. From each patient's T2 sagittal
series it took frame ⌊n/2⌋+1 (the mid-sagittal plane) and from the T2 axial series, for disc x
(x = 1 is L5-S1 ... x = 5 is L1-L2), frame 3x + 2(x-1) = 3, 8, 13, 18, 23 (1-based). Reproducing that
rule (and saying *why* a frame was picked, for the app) is what makes our models comparable.

Naming (our reading of the issue's "``<id>_3`` sagittal, ``<id>_12`` … ``<id>_51`` disc levels"): the
suffix of a disc image is the two vertebra numbers around the disc — L1-L2 → ``12``, L2-L3 → ``23``,
L3-L4 → ``34``, L4-L5 → ``45``, L5-S1 → ``51`` (S1 contributes its ``1``); that is exactly the range
``_12`` … ``_51``. The sagittal image keeps the study's fixed suffix ``_3``.

ROI (the study's "13×8 grid, blocks 30+13x+y"): the axial slice is cut into 13 columns × 8 rows of
blocks numbered row-major from 1 (block b sits in row ⌊(b-1)/13⌋, column (b-1) mod 13, 0-based). With
x ∈ 0..4 and y ∈ 1..4, 30+13x+y gives 31-34, 44-47, 57-60, 70-73, 83-86: 20 blocks = rows 2..6 ×
columns 4..7, i.e. the box y ∈ [2/8, 7/8)·H, x ∈ [4/13, 8/13)·W, the disc and spinal canal of a
centred axial lumbar slice (anterior up).
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from spine_models.data.records import DISC_STATES, Sample, SpineDataset  # DISC_STATES re-exported
from spine_models.errors import DatasetError, SpineInputError
from spine_models.io.dicom import orientation_of
from spine_models.io.study import SeriesInfo, StudyInfo, scan_studies  # the one DICOM study reader (re-exported)

__all__ = [
    "DISC_LEVELS",
    "LEVEL_CODES",
    "DISC_STATES",
    "GRID_COLS",
    "GRID_ROWS",
    "FrameChoice",
    "SeriesInfo",
    "StudyInfo",
    "select_sagittal_frame",
    "select_axial_frame",
    "disc_x",
    "study_image_name",
    "scan_studies",
    "select_frames",
    "roi_blocks",
    "block_cell",
    "roi_box",
    "roi_mask",
    "crop_roi",
    "ROICrop",
    "load_mri_dataset",
    "export_frames",
    "axial_lines_on_sagittal",
]

DISC_LEVELS = ["L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2"]  # disc x = 1..5
LEVEL_CODES = {"L5-S1": "51", "L4-L5": "45", "L3-L4": "34", "L2-L3": "23", "L1-L2": "12"}
SAGITTAL_SUFFIX = "3"
GRID_COLS, GRID_ROWS = 13, 8


# ---------------------------------------------------------------------------------------------
# the selection rule and naming
def select_sagittal_frame(n_frames: int) -> int:
    """1-based mid-sagittal frame of an n-frame series: ⌊n/2⌋ + 1."""
    if int(n_frames) < 1:
        raise SpineInputError(f"sagittal series with {n_frames} frames: need at least 1 frame")
    return int(n_frames) // 2 + 1


def select_axial_frame(disc: int | str) -> int:
    """1-based axial frame for disc x (1 = L5-S1 … 5 = L1-L2, or the level name): 3x + 2(x-1)."""
    x = disc_x(disc)
    return 3 * x + 2 * (x - 1)


def disc_x(disc: int | str) -> int:
    """Disc index x (1..5) from an int or a level name such as 'L4-L5' / 'l4l5'."""
    if isinstance(disc, (int, np.integer)) and not isinstance(disc, bool):
        if 1 <= int(disc) <= 5:
            return int(disc)
        raise SpineInputError(f"disc index {disc}: use 1 (L5-S1) … 5 (L1-L2)")
    key = re.sub(r"[^a-z0-9]", "", str(disc).lower())
    for i, name in enumerate(DISC_LEVELS, start=1):
        if key == re.sub(r"[^a-z0-9]", "", name.lower()):
            return i
    raise SpineInputError(f"disc level {disc!r}: use one of {', '.join(DISC_LEVELS)}")


def study_image_name(study_id: str, kind: str, x: int | str | None = None) -> str:
    """The MRI study's image name: ``<id>_3`` for the sagittal image, ``<id>_<code>`` for a disc
    (L1-L2 → ``_12`` … L5-S1 → ``_51``)."""
    if kind in ("sag", "sagittal", "mri_sag"):
        return f"{study_id}_{SAGITTAL_SUFFIX}"
    if kind in ("ax", "axial", "mri_ax"):
        if x is None:
            raise SpineInputError("an axial image name needs the disc (x = 1..5 or a level name)")
        return f"{study_id}_{LEVEL_CODES[DISC_LEVELS[disc_x(x) - 1]]}"
    raise SpineInputError(f"image kind {kind!r}: use 'sag' or 'ax'")


@dataclass
class FrameChoice:
    """One frame the study's rule chose, and why (the app shows ``reason``)."""

    kind: str  # "sag" | "ax"
    level: str | None  # disc level for axial choices
    x: int | None
    frame: int | None  # 1-based frame of the series in spatial order (spine_models.io.study.slice_order); None if missing
    name: str  # the study's image name, e.g. SYN-MRI-0001_45
    series_description: str
    reason: str
    path: Path | None = None
    frame_index: int = 0  # frame inside a multi-frame file
    instance_number: int | None = None

    @property
    def available(self) -> bool:
        return self.frame is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = None if self.path is None else str(self.path)
        return d


def _tokens(desc: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", desc.lower()) if t]


def _series_kind(s: SeriesInfo) -> str | None:
    """'sag' / 'ax' for a T2 sagittal / axial series, tolerant to naming ('t2_tse_sag', 'SAG T2', 'T2W AX')."""
    tok = _tokens(s.description)
    if any("myelo" in t for t in tok):
        return None
    t2 = any(t.startswith("t2") for t in tok)
    if not t2 and tok:
        return None
    if any(t.startswith("sag") for t in tok):
        return "sag"
    if any(t.startswith(("ax", "tra")) for t in tok):
        return "ax"
    plane = orientation_of(s.orientation) if s.orientation else None  # no plane in the name: use the geometry
    return {"sagittal": "sag", "axial": "ax"}.get(plane or "")


def select_frames(study: StudyInfo | str | Path, *, problems: list[str] | None = None) -> list[FrameChoice]:
    """The study rule's frames for one study: the mid-sagittal T2 frame and one axial T2 frame per disc.

    Accepts a :class:`StudyInfo` or a folder holding exactly one study. Missing series or too-short
    series give choices with ``frame=None`` and a reason instead of an error (the app shows them); files
    the scan left out (unreadable, refused sizes) are described in ``problems`` by neutral names.
    """
    if not isinstance(study, StudyInfo):
        found = scan_studies(study, problems=problems)
        if len(found) != 1:
            raise DatasetError(f"holds {len(found)} DICOM studies; pass one study folder", study)
        study = found[0]
    sags = [s for s in study.series if _series_kind(s) == "sag"]
    axs = [s for s in study.series if _series_kind(s) == "ax"]
    names = ", ".join(repr(s.description) for s in study.series) or "none"
    out: list[FrameChoice] = []
    if sags:
        s = max(sags, key=lambda s: s.n_frames)
        f = select_sagittal_frame(s.n_frames)
        out.append(FrameChoice("sag", None, None, f, study_image_name(study.study_id, "sag"), s.description,
                               f"{s.description!r} has {s.n_frames} frames; mid-sagittal frame ⌊{s.n_frames}/2⌋+1 = {f}",
                               s.files[f - 1], s.frame_index[f - 1], s.instance_numbers[f - 1]))
    else:
        out.append(FrameChoice("sag", None, None, None, study_image_name(study.study_id, "sag"), "",
                               f"no T2 sagittal series found (series: {names})"))
    ax = max(axs, key=lambda s: s.n_frames) if axs else None
    for x in range(1, 6):
        level = DISC_LEVELS[x - 1]
        f = select_axial_frame(x)
        name = study_image_name(study.study_id, "ax", x)
        rule = f"disc x={x} ({level}): frame 3x+2(x−1) = {f}"
        if ax is None:
            out.append(FrameChoice("ax", level, x, None, name, "", f"{rule}, but no T2 axial series found (series: {names})"))
        elif f > ax.n_frames:
            out.append(FrameChoice("ax", level, x, None, name, ax.description,
                                   f"{rule}, but {ax.description!r} has only {ax.n_frames} frames"))
        else:
            out.append(FrameChoice("ax", level, x, f, name, ax.description,
                                   f"{rule} of {ax.n_frames} in {ax.description!r}",
                                   ax.files[f - 1], ax.frame_index[f - 1], ax.instance_numbers[f - 1]))
    return out


# ---------------------------------------------------------------------------------------------
# ROI
def block_cell(block: int) -> tuple[int, int]:
    """(row, col), 0-based, of 1-based block number on the 13-column × 8-row grid."""
    if not 1 <= int(block) <= GRID_COLS * GRID_ROWS:
        raise SpineInputError(f"block {block}: the 13×8 grid has blocks 1..{GRID_COLS * GRID_ROWS}")
    return divmod(int(block) - 1, GRID_COLS)


def roi_blocks() -> list[int]:
    """The study's ROI blocks 30 + 13x + y, x ∈ 0..4, y ∈ 1..4 (20 blocks)."""
    return sorted(30 + 13 * x + y for x in range(5) for y in range(1, 5))


def _edges(n: int, parts: int) -> list[int]:
    return [(i * n) // parts for i in range(parts + 1)]


def roi_box(h: int, w: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), end-exclusive, of the ROI blocks on an h × w image."""
    cells = [block_cell(b) for b in roi_blocks()]
    re_, ce = _edges(int(h), GRID_ROWS), _edges(int(w), GRID_COLS)
    r0, r1 = min(c[0] for c in cells), max(c[0] for c in cells)
    c0, c1 = min(c[1] for c in cells), max(c[1] for c in cells)
    return re_[r0], re_[r1 + 1], ce[c0], ce[c1 + 1]


def roi_mask(h: int, w: int) -> np.ndarray:
    """Boolean h × w mask, the union of the ROI blocks."""
    m = np.zeros((int(h), int(w)), bool)
    re_, ce = _edges(int(h), GRID_ROWS), _edges(int(w), GRID_COLS)
    for b in roi_blocks():
        r, c = block_cell(b)
        m[re_[r]:re_[r + 1], ce[c]:ce[c + 1]] = True
    return m


def crop_roi(image: np.ndarray) -> np.ndarray:
    """The ROI of an H×W (or H×W×C) image."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise SpineInputError(f"crop_roi needs an H×W or H×W×C image, got shape {image.shape}")
    y0, y1, x0, x1 = roi_box(image.shape[0], image.shape[1])
    return image[y0:y1, x0:x1]


def _roicrop_class():
    import albumentations as A

    class ROICrop(A.Crop):
        """The MRI study's ROI (13×8 grid, blocks 30+13x+y) as an albumentations transform.

        A size-dependent :class:`albumentations.Crop`: image, mask, boxes and keypoints are cropped
        together, so it sits in any Compose (put it first: the ROI is defined on the full slice).
        """

        def __init__(self, p: float = 1.0):
            super().__init__(x_min=0, y_min=0, x_max=1, y_max=1, p=p)

        def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
            h, w = params["shape"][:2]
            y0, y1, x0, x1 = roi_box(h, w)
            return {"crop_coords": (x0, y0, x1, y1), "pad_params": None}

        def get_transform_init_args_names(self) -> tuple[str, ...]:
            return ()

    return ROICrop


def __getattr__(name: str):  # albumentations is imported only when ROICrop is used
    if name == "ROICrop":
        cls = _roicrop_class()
        globals()["ROICrop"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# dataset adapter
def _read_labels(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    path = root / "labels.csv"
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"patient_id", "level"} <= set(rows[0]):
        return {}
    return {(r["patient_id"], r["level"]): r for r in rows}


def load_mri_dataset(root: str | Path) -> SpineDataset:
    """One Sample per patient × disc level from DICOM study folders (view "mri_ax").

    ``path`` is the DICOM file of the frame the study's rule selects (``meta['frame_index']`` is the
    frame inside it when the series is one multi-frame file). Labels come from ``labels.csv`` (the
    synth layout) when present, else ``label`` is None. Studies without a usable axial series are
    listed in ``problems`` rather than failing the whole dataset, and so are files the scan left out
    (a header that does not parse, a refused size), by neutral names.
    """
    root = Path(root)
    labels = _read_labels(root if root.is_dir() else root.parent)
    samples: list[Sample] = []
    problems: list[str] = []
    for study in scan_studies(root, problems=problems):
        choices = select_frames(study)
        sag = choices[0]
        for ch in choices[1:]:
            if ch.frame is None:
                problems.append(f"study {study.study_id} {ch.level}: {ch.reason}")
                continue
            row = labels.get((study.study_id, ch.level or ""), {})
            meta: dict[str, Any] = {
                "level": ch.level, "disc_x": ch.x, "frame": ch.frame, "frame_index": ch.frame_index,
                "instance_number": ch.instance_number, "dicom_path": str(ch.path), "study_name": ch.name,
                "series_description": ch.series_description, "reason": ch.reason,
                "sagittal_path": None if sag.path is None else str(sag.path), "sagittal_frame": sag.frame,
            }
            for k in ("disc_grade", "herniation_type", "herniation_side", "scs", "rfs", "lfs"):
                if k in row:
                    meta[k] = int(row[k]) if k == "disc_grade" else row[k]
            samples.append(Sample(id=f"{study.study_id}_{ch.level}", patient_id=study.study_id, path=ch.path,
                                  view="mri_ax", label=row.get("disc_state") or None, meta=meta, source=str(root)))
    present = {s.label for s in samples if s.label}
    return SpineDataset(name=root.name, samples=samples, classes=[c for c in DISC_STATES if c in present],
                        problems=problems, root=str(root))


# ---------------------------------------------------------------------------------------------
# export
_IDENTIFYING = (
    "PatientName", "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "PatientMotherBirthName", "MilitaryRank",
    "EthnicGroup", "PatientComments", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "AccessionNumber", "StationName", "DeviceSerialNumber", "RequestingPhysician", "InstitutionalDepartmentName",
    "PatientAge", "PatientWeight", "PatientSize", "StudyID", "IssuerOfPatientID",
)


def _frame_pixels(path: Path, frame_index: int, shown: str) -> tuple[Any, np.ndarray]:
    """(dataset, stored values of one frame) through the io guards: a bad file is one SpineInputError naming ``shown``."""
    from spine_models.io._limits import read_file_bytes
    from spine_models.io.dicom import read_dicom_stored

    ds, arr = read_dicom_stored(read_file_bytes(path, shown), shown, min_size=1)
    if not 0 <= frame_index < arr.shape[0]:
        raise SpineInputError(f"holds {arr.shape[0]} frame(s), not frame {frame_index + 1} its header declared; re-export it",
                              shown)
    return ds, np.asarray(arr[frame_index])


def _shown(path: Path) -> str:
    """A file's neutral name, the one :func:`scan_studies` gives it (its real name with the opt-in)."""
    from spine_models.io.deid import display_name

    return display_name(Path(path).absolute().as_posix())


def _write_png16(path: Path, arr: np.ndarray, bits: int) -> None:
    """16-bit PNG scaled from the stored bit depth to the full 16-bit range (values stay comparable)."""
    import cv2

    a = np.asarray(arr, dtype=np.float64)
    if a.min() < 0:
        a = a - a.min()
    top = float(2 ** int(bits) - 1) if bits else max(float(a.max()), 1.0)
    out = np.clip(np.round(a * (65535.0 / top)), 0, 65535).astype(np.uint16)
    if not cv2.imwrite(str(path), out):
        raise SpineInputError("could not write the PNG; check the --out folder is writable", path)


def _write_single_dcm(path: Path, ds, arr: np.ndarray, study_id: str, frame: int) -> None:
    """Single-frame, de-identified copy: geometry kept, identifiers removed, new deterministic UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    keep = Dataset()
    for elem in ds:
        if elem.tag.is_private or elem.keyword in _IDENTIFYING or elem.keyword in (
                "PixelData", "NumberOfFrames", "PerFrameFunctionalGroupsSequence", "FrameIncrementPointer"):
            continue
        keep.add(elem)
    old_sop = str(getattr(ds, "SOPInstanceUID", ""))
    sop = generate_uid(entropy_srcs=["export-frames", old_sop, str(frame)])
    keep.SOPInstanceUID = sop
    keep.PatientID = study_id
    keep.PatientName = "ANONYMIZED"
    keep.PatientIdentityRemoved = "YES"
    keep.DeidentificationMethod = "spine-models export-frames: identifiers removed"
    for uid_kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        if uid_kw in keep:
            setattr(keep, uid_kw, generate_uid(entropy_srcs=["export-frames", uid_kw, str(getattr(ds, uid_kw))]))
    sop_class = str(getattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.4"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["spine_models", "export-frames"])
    keep.file_meta = meta
    keep.SamplesPerPixel = 1
    keep.PhotometricInterpretation = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    keep.Rows, keep.Columns = int(arr.shape[0]), int(arr.shape[1])
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0)
    dtype = {(8, 0): "u1", (8, 1): "i1", (16, 0): "<u2", (16, 1): "<i2"}.get((bits, signed))
    if dtype is None:
        bits, dtype = 16, ("<i2" if signed else "<u2")
        keep.BitsAllocated, keep.BitsStored, keep.HighBit = 16, 16, 15
    keep.PixelData = np.ascontiguousarray(arr.astype(dtype)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    keep.save_as(path, enforce_file_format=True)


def export_frames(study_or_folder: str | Path, out_dir: str | Path, fmt: str = "png",
                  frames: str = "selected", *, quiet: bool = True, problems: list[str] | None = None) -> list[Path]:
    """Turn MRI volumes into 2-D images (the implant/scoliosis study's data enlargement).

    ``frames="selected"``: the study rule's frames, named ``<id>_3`` (sagittal) and ``<id>_12`` …
    ``<id>_51`` (discs); ``frames="all"``: every frame of every series as ``<id>_<series>_<frame>``.
    ``fmt``: ``png`` (16-bit grayscale) or ``dcm`` (single-frame, de-identified, geometry kept).
    Writes ``frames.csv`` (name, source series, frame, level, reason) next to the images. A file that
    cannot be read or decoded is skipped and described in ``problems`` (neutral names) while the rest is
    exported; :class:`DatasetError` only when no frame at all could be written.
    """
    from spine_models._progress import progress

    if fmt not in ("png", "dcm"):
        raise SpineInputError(f"--format {fmt!r}: use png or dcm")
    if frames not in ("selected", "all"):
        raise SpineInputError(f"frames {frames!r}: use 'selected' or 'all'")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SpineInputError("exists and is not a folder; choose another --out", out_dir)
    problems = [] if problems is None else problems
    root = Path(study_or_folder)
    studies = scan_studies(root, problems=problems)
    jobs: list[tuple[str, Path, int, int, str, str, str, str]] = []  # name, file, frame_index, frame, series, level, reason, study
    for st in studies:
        if frames == "selected":
            for ch in select_frames(st):
                if ch.path is not None and ch.frame is not None:
                    jobs.append((ch.name, ch.path, ch.frame_index, ch.frame, ch.series_description, ch.level or "",
                                 ch.reason, st.study_id))
        else:
            for s in st.series:
                tag = re.sub(r"[^A-Za-z0-9]+", "-", s.description).strip("-") or s.folder.name
                for k in range(s.n_frames):
                    jobs.append((f"{st.study_id}_{tag}_{k + 1:03d}", s.files[k], s.frame_index[k], k + 1,
                                 s.description, "", "all frames", st.study_id))
    if not jobs:
        raise DatasetError("no frame to export: no T2 sagittal/axial series found; use --all to export every frame",
                           study_or_folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rows: list[list[Any]] = []
    for name, src, fidx, frame, desc, level, reason, sid in progress(jobs, total=len(jobs), desc="export", quiet=quiet):
        try:
            ds, arr = _frame_pixels(src, fidx, _shown(src))
        except SpineInputError as exc:  # one bad file is this frame's problem, not the export's
            problems.append(f"{exc}; its frame is not exported")
            continue
        if fmt == "png":
            path = out_dir / f"{name}.png"
            _write_png16(path, arr, int(getattr(ds, "BitsStored", 0) or 0))
        else:
            path = out_dir / f"{name}.dcm"
            _write_single_dcm(path, ds, arr, sid, frame)
        written.append(path)
        rows.append([name, path.name, desc, frame, level, reason])
    if not written:
        raise DatasetError(f"none of the {len(jobs)} frame(s) could be read (first: {problems[-1][:160]}); re-export the study",
                           study_or_folder)
    with open(out_dir / "frames.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["name", "file", "series", "frame", "level", "reason"])
        w.writerows(rows)
    return written


def _plane(choice: FrameChoice) -> Any:
    """The chosen frame's plane in patient coordinates (``io.dicom.plane_geometry``), None when unknown."""
    from spine_models.io.dicom import parse_dicom, plane_geometry

    if choice.path is None or not choice.available or choice.frame_index:  # multi-frame files: per-frame groups, not read
        return None
    from spine_models.io._limits import read_file_bytes

    try:
        return plane_geometry(parse_dicom(read_file_bytes(choice.path, choice.name), choice.name))
    except SpineInputError:  # no geometry to draw: the page shows the frame without lines
        return None


def axial_lines_on_sagittal(sag: FrameChoice, axial: Sequence[FrameChoice]) -> list[dict[str, Any]]:
    """Where each chosen axial slice cuts the chosen sagittal frame: ``[{"level", "frame", "p0", "p1"}]`` with the
    line's end points in sagittal pixel coordinates (x = column, y = row) at the image's left and right edges.

    Why: a reader checks the frame choice by seeing the axial slices on the sagittal image (is the L4-L5 slice
    through the L4-L5 disc?). The line is the intersection of the two planes: the sagittal pixel (row i, column j)
    sits at ``O + j*dx*r + i*dy*c``; it lies on the axial plane when ``n . (O + j*dx*r + i*dy*c - A) = 0``, ``n``
    the axial normal and ``A`` its origin. Slices without geometry, or parallel to the sagittal rows, are left out.
    """
    s = _plane(sag) if sag is not None else None
    if s is None:
        return []
    o, r, c = (np.asarray(v, float) for v in (s.origin, s.row_dir, s.col_dir))
    dy, dx = s.spacing
    rows, cols = s.shape
    out = []
    for ch in axial:
        a = _plane(ch)
        if a is None:
            continue
        n = np.cross(np.asarray(a.row_dir, float), np.asarray(a.col_dir, float))
        k_row = float(n @ c) * dy
        if abs(k_row) < 1e-6 * dy:  # the axial plane runs along the sagittal rows: no line to draw
            continue
        base, k_col = float(n @ (o - np.asarray(a.origin, float))), float(n @ r) * dx
        ys = [-(base + k_col * x) / k_row for x in (0.0, cols - 1.0)]
        if all(y < 0 or y > rows - 1 for y in ys):
            continue  # the slice misses the frame
        out.append({"level": ch.level, "frame": ch.frame, "p0": (0.0, ys[0]), "p1": (cols - 1.0, ys[1])})
    return out
