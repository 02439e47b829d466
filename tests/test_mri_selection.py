"""The MRI study's frame rule, naming, ROI and frame export, on small hand-built DICOM studies."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from spine_models.data import mri
from spine_models.errors import SpineInputError

pydicom = pytest.importorskip("pydicom")


def _write_series(folder: Path, desc: str, n: int, iop: list[float], markers: list[int], *, study_uid: str,
                  shuffle_names: bool = True, size: int = 32, slots: list[int] | None = None) -> None:
    """n single-frame files; frame k (1-based InstanceNumber) is filled with markers[k-1] and sits at
    slice position slots[k-1] (default k) along the normal, 4 mm apart.
    File names are deliberately not in instance order: selection must sort by position, not by name."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series_uid = generate_uid(entropy_srcs=[str(folder), desc])
    order = list(range(1, n + 1))
    names = order[::-1] if shuffle_names else order
    for inst, name in zip(order, names):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(folder), desc, str(inst)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "MR"
        ds.PatientName = "Doe^Jane"  # identifying on purpose: export must remove it
        ds.PatientID = "HOSPITAL-12345"
        ds.PatientBirthDate = "19700101"
        ds.SeriesDescription = desc
        ds.InstanceNumber = inst
        ds.ImageOrientationPatient = iop
        slot = inst if slots is None else slots[inst - 1]
        ds.ImagePositionPatient = [0, 0, float(slot) * 4] if iop == [1, 0, 0, 0, 1, 0] else [float(slot) * 4, 0, 0]
        ds.PixelSpacing = [0.8, 0.8]
        ds.SliceThickness = 4
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.full((size, size), markers[inst - 1], "<u2").tobytes()
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"IM{name:03d}.dcm", enforce_file_format=True)


@pytest.fixture()
def tiny_study(tmp_path: Path) -> Path:
    """PAT7/{sag,ax,myelo}: sagittal 15 frames (marker 100+k), axial 25 frames (marker 1000+k)."""
    root = tmp_path / "PAT7"
    uid = "1.2.826.0.1.3680043.8.498.77"
    _write_series(root / "s1", "t2_tse_sag", 15, [0, 1, 0, 0, 0, -1], [100 + k for k in range(1, 16)], study_uid=uid)
    _write_series(root / "s2", "T2 AX", 25, [1, 0, 0, 0, 1, 0], [1000 + k for k in range(1, 26)], study_uid=uid)
    _write_series(root / "s3", "MYELO", 3, [1, 0, 0, 0, 0, -1], [7, 7, 7], study_uid=uid)
    return root


def test_rule_values() -> None:
    assert [mri.select_sagittal_frame(n) for n in (1, 2, 15, 16, 17)] == [1, 2, 8, 9, 9]
    assert [mri.select_axial_frame(x) for x in range(1, 6)] == [3, 8, 13, 18, 23]
    assert mri.select_axial_frame("L5-S1") == 3 and mri.select_axial_frame("l1l2") == 23
    with pytest.raises(SpineInputError):
        mri.select_axial_frame(6)
    with pytest.raises(SpineInputError):
        mri.select_sagittal_frame(0)


def test_naming() -> None:
    assert mri.study_image_name("P1", "sag") == "P1_3"
    names = [mri.study_image_name("P1", "ax", x) for x in range(1, 6)]
    assert names == ["P1_51", "P1_45", "P1_34", "P1_23", "P1_12"]
    assert mri.study_image_name("P1", "ax", "L3-L4") == "P1_34"


def test_roi_block_arithmetic() -> None:
    blocks = mri.roi_blocks()
    assert len(blocks) == 20
    assert blocks == [31, 32, 33, 34, 44, 45, 46, 47, 57, 58, 59, 60, 70, 71, 72, 73, 83, 84, 85, 86]
    assert mri.block_cell(1) == (0, 0) and mri.block_cell(13) == (0, 12) and mri.block_cell(104) == (7, 12)
    rows = {mri.block_cell(b)[0] for b in blocks}
    cols = {mri.block_cell(b)[1] for b in blocks}
    assert rows == {2, 3, 4, 5, 6} and cols == {4, 5, 6, 7}
    assert mri.roi_box(256, 256) == (64, 224, 78, 157)
    m = mri.roi_mask(256, 256)
    y0, y1, x0, x1 = mri.roi_box(256, 256)
    assert m.sum() == (y1 - y0) * (x1 - x0) and m[y0:y1, x0:x1].all()
    img = np.arange(256 * 300, dtype=np.float32).reshape(256, 300)
    crop = mri.crop_roi(img)
    y0, y1, x0, x1 = mri.roi_box(256, 300)
    assert crop.shape == (y1 - y0, x1 - x0) and crop[0, 0] == img[y0, x0]


def test_roicrop_transform_crops_image_and_mask() -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    img = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    mask = np.zeros((128, 128), np.uint8)
    mask[70, 50] = 1
    out = A.Compose([mri.ROICrop(), A.HorizontalFlip(p=0.0)])(image=img, mask=mask)
    y0, y1, x0, x1 = mri.roi_box(128, 128)
    assert out["image"].shape == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(out["image"], img[y0:y1, x0:x1])
    assert out["mask"][70 - y0, 50 - x0] == 1


def _marker(path: Path) -> int:
    return int(pydicom.dcmread(path).pixel_array[0, 0])


def test_select_frames_picks_planted_frames(tiny_study: Path) -> None:
    choices = mri.select_frames(tiny_study)
    assert [c.kind for c in choices] == ["sag", "ax", "ax", "ax", "ax", "ax"]
    sag = choices[0]
    assert sag.frame == 8 and _marker(sag.path) == 108 and sag.name == "PAT7_3"
    assert "15" in sag.reason and "8" in sag.reason
    for c, x in zip(choices[1:], range(1, 6)):
        assert c.x == x and c.level == mri.DISC_LEVELS[x - 1]
        assert c.frame == 5 * x - 2 and _marker(c.path) == 1000 + 5 * x - 2, c
        assert c.name == mri.study_image_name("PAT7", "ax", x)
        assert str(c.frame) in c.reason


@pytest.mark.parametrize("sag,ax", [("SAG T2", "t2_tse_tra"), ("T2W_TSE_SAG", "AX T2 FSE")])
def test_series_name_tolerance(tmp_path: Path, sag: str, ax: str) -> None:
    root = tmp_path / "P2"
    _write_series(root / "a", sag, 5, [0, 1, 0, 0, 0, -1], [10 + k for k in range(1, 6)], study_uid="1.2.3.4")
    _write_series(root / "b", ax, 25, [1, 0, 0, 0, 1, 0], [500 + k for k in range(1, 26)], study_uid="1.2.3.4")
    choices = mri.select_frames(root)
    assert _marker(choices[0].path) == 13  # ⌊5/2⌋+1 = 3
    assert [_marker(c.path) for c in choices[1:]] == [503, 508, 513, 518, 523]


def test_missing_or_short_axial_series_reported(tmp_path: Path) -> None:
    root = tmp_path / "P3"
    _write_series(root / "a", "T2 SAG", 5, [0, 1, 0, 0, 0, -1], [1] * 5, study_uid="1.2.3.5")
    _write_series(root / "b", "T2 AX", 10, [1, 0, 0, 0, 1, 0], [2] * 10, study_uid="1.2.3.5")
    choices = mri.select_frames(root)
    assert [c.available for c in choices[1:]] == [True, True, False, False, False]
    assert "only 10 frames" in choices[3].reason
    ds = mri.load_mri_dataset(root)
    assert len(ds) == 2 and all(s.label is None and s.view == "mri_ax" for s in ds.samples)
    assert len(ds.problems) == 3


def test_load_dataset_without_labels(tiny_study: Path) -> None:
    ds = mri.load_mri_dataset(tiny_study.parent)
    assert len(ds) == 5 and ds.patients == ["PAT7"] and ds.classes == []
    s = ds.samples[0]
    assert s.id == "PAT7_L5-S1" and s.label is None and s.meta["frame"] == 3 and _marker(s.path) == 1003


def test_export_png_selected(tiny_study: Path, tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "png"
    written = mri.export_frames(tiny_study, out, fmt="png")
    assert sorted(p.name for p in written) == sorted(f"PAT7_{s}.png" for s in ("3", "12", "23", "34", "45", "51"))
    img = cv2.imread(str(out / "PAT7_51.png"), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint16 and img.shape == (32, 32)
    assert int(img[0, 0]) == round(1003 * 65535 / 4095)  # frame 3, scaled from 12 to 16 bits
    assert (out / "frames.csv").read_text().count("\n") == 7


def test_export_dcm_all_via_cli(tiny_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from spine_models.cli import main

    out = tmp_path / "dcm"
    assert main(["export-frames", str(tiny_study), "--out", str(out), "--format", "dcm", "--all", "--quiet"]) == 0
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 15 + 25 + 3
    assert '"written": 43' in capsys.readouterr().out
    ds = pydicom.dcmread(out / "PAT7_T2-AX_008.dcm")
    assert int(ds.pixel_array[0, 0]) == 1008 and ds.InstanceNumber == 8
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.8] and len(ds.ImageOrientationPatient) == 6
    assert str(ds.PatientName) == "ANONYMIZED" and ds.PatientID == "PAT7" and "PatientBirthDate" not in ds
    assert main(["export-frames", str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_chosen_frame_is_the_shown_frame_when_instance_numbers_disagree_with_positions(tmp_path: Path) -> None:
    """An interleaved axial acquisition: instances 1..13 on the even slots, 14..25 on the odd ones, so
    InstanceNumber order is not spatial order. Selection (headers) and the display (read_study, the
    MRI page's series view) number frames by one rule (position along the normal), so every chosen
    frame is the frame the page shows under that number."""
    from spine_models.io import read_study

    root = tmp_path / "PAT9"
    slots = [2 * (i - 1) for i in range(1, 14)] + [2 * (i - 14) + 1 for i in range(14, 26)]
    _write_series(root / "ax", "T2 AX", 25, [1, 0, 0, 0, 1, 0], [1000 + k for k in range(1, 26)], study_uid="1.2.3.9",
                  slots=slots)
    _write_series(root / "sag", "T2 SAG", 5, [0, 1, 0, 0, 0, -1], [10 + k for k in range(1, 6)], study_uid="1.2.3.9",
                  slots=[4, 0, 3, 1, 2])
    shown = {s.description: s for s in read_study(root).series}
    choices = mri.select_frames(root)
    assert all(c.available for c in choices)
    for c in choices:
        series = shown[c.series_description]
        base = 1000 if c.kind == "ax" else 10
        marker = _marker(c.path)  # the file selection chose ...
        assert marker == base + c.instance_number and c.instance_number == series.instance_numbers[c.frame - 1], c
        lo, hi = base + 1, base + series.frames  # ... is the frame the page shows (one scale per series)
        assert series.frame(c.frame)[0, 0] == pytest.approx((marker - lo) / (hi - lo), abs=1e-4), c
    ax = shown["T2 AX"]
    assert [p[2] for p in ax.positions] == [4.0 * k for k in range(25)]  # frame k is the k-th slice in space
    assert [c.instance_number for c in choices[1:]] != [c.frame for c in choices[1:]]  # the two orders differ here
    sag = choices[0]
    assert sag.frame == 3 and sag.instance_number == 5  # mid-sagittal = the middle slot (2), instance 5


def test_axial_slices_are_drawn_where_they_cut_the_sagittal_frame(monkeypatch: pytest.MonkeyPatch, tiny_study: Path) -> None:
    """Plane intersection in patient coordinates: a sagittal frame whose rows run down from z = 100 mm at 0.5 mm
    per pixel is cut by an axial slice at z = 80 mm on row 40 (and a tilted slice gives a sloped line)."""
    from spine_models.data import mri
    from spine_models.io.dicom import PlaneGeometry

    sag = PlaneGeometry((0.0, -50.0, 100.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (0.5, 0.5), (200, 200))
    flat = PlaneGeometry((-50.0, -50.0, 80.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.8, 0.8), (64, 64))
    s = np.sin(np.radians(10))
    tilted = PlaneGeometry((-50.0, -50.0, 60.0), (1.0, 0.0, 0.0), (0.0, np.cos(np.radians(10)), s), (0.8, 0.8), (64, 64))
    planes = {"sag": sag, "L4-L5": flat, "L5-S1": tilted}
    monkeypatch.setattr(mri, "_plane", lambda ch: planes.get(ch.level or "sag"))
    choice = lambda kind, level: mri.FrameChoice(kind, level, None, 1, "x", "T2", "why")  # noqa: E731
    lines = mri.axial_lines_on_sagittal(choice("sag", None), [choice("ax", "L4-L5"), choice("ax", "L5-S1")])
    assert [ln["level"] for ln in lines] == ["L4-L5", "L5-S1"]
    assert lines[0]["p0"][1] == pytest.approx(40.0) and lines[0]["p1"][1] == pytest.approx(40.0)
    y0, y1 = lines[1]["p0"][1], lines[1]["p1"][1]
    assert y0 != pytest.approx(y1) and (y1 - y0) / 199 == pytest.approx(-np.tan(np.radians(10)), rel=1e-6)
    # the tiny study's axial slices lie above its sagittal field of view: nothing is drawn rather than a wrong line
    monkeypatch.undo()
    choices = mri.select_frames(tiny_study)
    sag_choice = next(c for c in choices if c.kind == "sag")
    assert mri.axial_lines_on_sagittal(sag_choice, [c for c in choices if c.kind == "ax"]) == []


def test_a_garbage_file_in_a_study_folder_is_a_problem_not_a_failed_dataset(tiny_study: Path) -> None:
    """A stray garbage .dcm among a study's files used to stop the whole header scan (DatasetError for every study):
    now it is one neutral problem line and the study's five disc samples are still there."""
    (tiny_study / "s2" / "HOSPITAL-12345_junk.dcm").write_bytes(b"\x00garbage" * 40)
    ds = mri.load_mri_dataset(tiny_study.parent)
    assert len(ds) == 5 and ds.patients == ["PAT7"]
    [line] = [p for p in ds.problems if "skipped" in p]
    assert "\n" not in line and len(line) <= 300 and "HOSPITAL" not in line and "file-" in line
    problems: list[str] = []
    assert all(c.available for c in mri.select_frames(tiny_study, problems=problems))
    assert problems == [line]


def test_export_reports_a_truncated_frame_and_exports_the_rest(tiny_study: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """The header is whole (so the frame is chosen) but the pixel data stops half way: the old export crashed on
    pydicom's pixel_array with a traceback; now that frame is a one-line problem (neutral name) and the others
    are written."""
    from spine_models.cli import main

    chosen = {c.name: c for c in mri.select_frames(tiny_study)}
    bad = chosen["PAT7_45"].path
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 1000])  # 32×32×2 bytes of pixels: about half of them gone
    out = tmp_path / "png"
    assert main(["export-frames", str(tiny_study), "--out", str(out), "--quiet"]) == 0
    report = capsys.readouterr().out
    assert '"written": 5' in report and "PAT7_45.png" not in {p.name for p in out.iterdir()}
    import json

    [line] = json.loads(report)["problems"]
    assert "truncated" in line and bad.name not in line and "file-" in line and len(line) <= 300
    assert (out / "frames.csv").read_text().count("\n") == 6


def test_export_with_no_readable_frame_is_one_line(tiny_study: Path, tmp_path: Path) -> None:
    from spine_models.errors import DatasetError

    for c in mri.select_frames(tiny_study):
        if c.path is not None:
            c.path.write_bytes(c.path.read_bytes()[:-1000])
    with pytest.raises(DatasetError, match="none of the 6 frame"):
        mri.export_frames(tiny_study, tmp_path / "out")
