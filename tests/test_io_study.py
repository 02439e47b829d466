"""read_study: grouping by series, spatial order, ZIPs (safely), problems reported not fatal."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from spine_models.errors import DatasetError
from spine_models.io import read_study
from spine_models.io.archive import safe_extract_zip
from spine_models.io.dicom_build import make_dicom

SAG = [0, 1, 0, 0, 0, -1]
AX = [1, 0, 0, 0, 1, 0]


def _study(folder, *, shuffle_names: bool = True):
    """T2 SAG (6 slices along x) and T2 AX (4 slices along z), files named out of order."""
    order = [3, 0, 5, 1, 4, 2]
    for k, i in enumerate(order):
        name = f"f{k:02d}.dcm" if shuffle_names else f"sag{i}.dcm"
        make_dicom(
            np.full((40, 36), 100 * i + 10, np.uint16), folder / "a" / name, modality="MR", series_description="T2 SAG",
            series_uid="1.2.3.4.5.1", study_uid="1.2.3.4.5", series_number=1, image_orientation=SAG,
            image_position=[i * 4.0 - 10, 0, 0], instance_number=i + 1, pixel_spacing=(0.5, 0.6), slice_thickness=4,
        )
    for i in range(4):
        make_dicom(
            np.full((32, 32), 50 * i + 10, np.uint16), folder / "b" / f"x{3 - i}.dcm", modality="MR", series_description="T2 AX",
            series_uid="1.2.3.4.5.2", study_uid="1.2.3.4.5", series_number=2, image_orientation=AX,
            image_position=[0, 0, 100.0 - 3 * i], instance_number=i + 1, slice_thickness=3,
        )
    (folder / "readme.txt").write_text("not dicom")


def test_series_grouped_and_sorted(tmp_path):
    _study(tmp_path)
    study = read_study(tmp_path)
    assert [s.description for s in study.series] == ["T2 SAG", "T2 AX"]
    sag, ax = study.series
    assert sag.pixels.shape == (6, 40, 36) and sag.pixels.dtype == np.float32
    assert sag.instance_numbers == [1, 2, 3, 4, 5, 6]
    assert np.all(np.diff(sag.pixels[:, 0, 0]) > 0)  # frame k is slice k in space
    assert sag.orientation == "sagittal" and ax.orientation == "axial"
    assert sag.pixel_spacing_mm == (0.5, 0.6) and sag.slice_thickness_mm == 4.0
    assert sag.spacing_between_slices_mm == pytest.approx(4.0) and ax.spacing_between_slices_mm == pytest.approx(3.0)
    assert ax.instance_numbers == [1, 2, 3, 4] and np.all(np.diff(ax.pixels[:, 0, 0]) > 0)
    assert study.find("sag") == [sag] and sag.frame(1).shape == (40, 36)
    assert any("non-DICOM" in p for p in study.problems)


def test_position_beats_wrong_instance_numbers(tmp_path):
    """Files whose InstanceNumbers are all 1 still come out in spatial order."""
    for i in (2, 0, 1):
        make_dicom(np.full((32, 32), 10 + i, np.uint16), tmp_path / f"s{i}.dcm", modality="MR", series_uid="1.2.3.9",
                   image_orientation=AX, image_position=[0, 0, float(i)], instance_number=1)
    (series,) = read_study(tmp_path).series
    assert np.all(np.diff(series.pixels[:, 0, 0]) > 0)


def test_instance_number_order_without_positions(tmp_path):
    for i in (3, 1, 2):
        make_dicom(np.full((32, 32), 10 * i, np.uint16), tmp_path / f"z{4 - i}.dcm", modality="MR", series_uid="1.2.3.8", instance_number=i)
    (series,) = read_study(tmp_path).series
    assert series.instance_numbers == [1, 2, 3]


def test_zip_study_and_traversal_refused(tmp_path):
    _study(tmp_path / "src")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "src").rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tmp_path / "src").as_posix())
        zf.writestr("../../evil.dcm", (tmp_path / "src" / "b" / "x0.dcm").read_bytes())
        zf.writestr("/abs/evil2.dcm", b"x")
    study = read_study(archive)
    assert [s.frames for s in study.series] == [6, 4]  # the traversal member was not read
    out = safe_extract_zip(archive, tmp_path / "out")
    assert all((tmp_path / "out").resolve() in p.parents for p in out)
    assert not (tmp_path / "evil.dcm").exists() and len(out) == 11


def test_zip_bomb_refused(tmp_path):
    from spine_models.errors import DecompressionBombError

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.dcm", b"\x00" * (20 * 1024**2))
    with pytest.raises(DecompressionBombError):
        read_study(archive)


def test_one_zip_extractor_and_one_limit_for_studies_and_datasets(tmp_path, monkeypatch):
    """A study upload and a dataset ZIP go through io.archive with the same SPINE_MODELS_MAX_ZIP_BYTES (read
    on every call); extraction happens once per archive content, keeps empty folders, and a dataset refuses
    a member that escapes while an upload skips it."""
    from spine_models.data.adapters import load_dataset
    from spine_models.errors import DecompressionBombError
    from spine_models.io.archive import COMPLETE_MARKER, extract_zip_once

    _study(tmp_path / "src")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "src").rglob("*.dcm")):
            zf.write(p, p.relative_to(tmp_path / "src").as_posix())
        zf.writestr("empty/", b"")
        zf.writestr("../escape.dcm", b"x")
    size = sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    monkeypatch.setenv("SPINE_MODELS_MAX_ZIP_BYTES", str(size - 1))
    for read in (read_study, load_dataset, lambda a: extract_zip_once(a, tmp_path / "cache")):
        with pytest.raises(DecompressionBombError, match=f"limit of {size - 1:,}"):
            read(archive)
    monkeypatch.setenv("SPINE_MODELS_MAX_ZIP_BYTES", str(size))
    first = extract_zip_once(archive, tmp_path / "cache")
    assert (first / COMPLETE_MARKER).is_file() and (first / "empty").is_dir() and not (tmp_path / "escape.dcm").exists()
    assert extract_zip_once(archive, tmp_path / "cache") == first and len(list((tmp_path / "cache").iterdir())) == 1
    with pytest.raises(DatasetError, match="path traversal"):
        load_dataset(archive)


def test_no_dicom_is_a_dataset_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="no readable DICOM"):
        read_study(tmp_path)
    with pytest.raises(DatasetError):
        read_study(tmp_path / "missing")


def test_bad_slice_reported_not_fatal(tmp_path):
    _study(tmp_path)
    data = (tmp_path / "a" / "f00.dcm").read_bytes()
    (tmp_path / "a" / "f00.dcm").write_bytes(data[:-300])
    study = read_study(tmp_path)
    assert study.series[0].frames == 5
    assert any("truncated" in p for p in study.problems)
