"""A fixed subset of the seeded fuzz (spine_models.io.fuzz): every hostile input reads or is refused in one line."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from spine_models.io.fuzz import FAMILIES, generate, run_case, run_cli_case
from spine_models.measure.slip import _measurable_levels


def test_fuzz_subset_only_one_line_refusals(tmp_path):
    counts = collections.Counter()
    bad = []
    for i, case in enumerate(generate(200, seed=20261202)):
        work = tmp_path / str(i)
        work.mkdir()
        outcome, detail = run_case(case, work)
        counts[(case.family, outcome)] += 1
        if outcome not in ("ok", "refused"):
            bad.append((case.family, case.mutation, outcome, detail))
    assert bad == []
    assert {f for f, _o in counts} == set(FAMILIES)  # every family really exercised
    # and refused at least once (a series folder with bad slices still reads: its bad files go to problems)
    assert {f for f, o in counts if o == "refused"} >= set(FAMILIES) - {"SERIES"}


def test_fuzz_cli_sample_exit_codes_and_one_line(tmp_path):
    """A few inputs through `spine-models info --header` in a subprocess: exit 0 + JSON or exit 2 + one line."""
    cases = [c for c in generate(40, seed=7) if c.family in ("DICOM", "ZIP", "SERIES", "TIFF")][:4]
    for i, case in enumerate(cases):
        work = tmp_path / f"cli{i}"
        work.mkdir()
        outcome, detail = run_cli_case(case, work)
        assert outcome in ("ok", "refused"), (case.family, case.mutation, outcome, detail)


def test_huge_rescale_slope_reads_finite():
    """RescaleSlope 1e38: the modality values span more than float32 holds; the image is still finite in [0, 1]."""
    import io

    import pydicom

    from spine_models.io import read_image_bytes
    from spine_models.io.dicom_build import make_dicom

    ds = make_dicom((np.arange(48 * 40).reshape(48, 40) - 900).astype(np.int16), modality="CT", uid_seed="slope")
    ds.RescaleSlope, ds.RescaleIntercept = "1e38", "0"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    rg = read_image_bytes(buf.getvalue(), "a.dcm")
    assert np.isfinite(rg.pixels).all() and rg.pixels.min() >= 0 and rg.pixels.max() <= 1
    assert rg.pixels.max() - rg.pixels.min() > 0.9  # still the image, not a constant
    assert pydicom  # imported for make_dicom's writer


def test_embedded_codestream_bomb_keeps_its_own_message():
    """An embedded JPEG above the pixel limit is refused as a bomb, not as 'does not parse (DecompressionBombError)'."""
    import io
    import struct

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from spine_models.errors import DecompressionBombError
    from spine_models.io import read_image_bytes
    from spine_models.io.dicom_build import make_dicom

    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(jpeg, "JPEG")
    data = bytearray(jpeg.getvalue())
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", 20000, 20000)
    ds = make_dicom(np.zeros((64, 64), np.uint8), uid_seed="codestream")
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([bytes(data)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(DecompressionBombError, match="20000×20000") as err:
        read_image_bytes(buf.getvalue(), "PID-77341_07.dcm")
    assert "(DecompressionBombError)" not in str(err.value) and "PID-77341" not in str(err.value)


def test_zip_member_with_an_empty_name_is_skipped(tmp_path):
    """A central directory entry with an empty name (ZipInfo.is_dir raises IndexError on it) is skipped."""
    import random

    from spine_models.io import fuzz

    for seed in range(500):
        mutation, data = fuzz._zip_case(random.Random(seed))
        if mutation == "empty_name":
            break
    assert mutation == "empty_name"
    outcome, detail = run_case(fuzz.Case("ZIP", mutation, "PID-77341_1.zip", data), tmp_path)
    assert outcome in ("ok", "refused"), detail


def test_limit_env_infinite_is_a_config_error(monkeypatch):
    from spine_models.errors import ConfigError
    from spine_models.io._limits import resolve_max_pixels

    for raw in ("inf", "1e999", "nan"):
        monkeypatch.setenv("SPINE_MODELS_MAX_PIXELS", raw)
        with pytest.raises(ConfigError, match="SPINE_MODELS_MAX_PIXELS"):
            resolve_max_pixels()


def test_zero_length_endplate_is_a_failed_level_not_an_exception():
    good = np.array([[0, 0], [40, 0], [40, 20], [0, 20]], float)
    flat = np.array([[10, 30], [10, 30], [10, 50], [10, 50]], float)  # TL == TR: zero-length endplate
    levels, failed = _measurable_levels({"L4": good, "L5": flat}, "left")
    assert levels == {} and "zero length" in failed["L4-L5"]


def test_scan_studies_unreadable_header_is_one_neutral_problem_and_the_scan_carries_on(tmp_path, capfd):
    """The header-only scan of a dataset folder: a VR pydicom does not know (NotImplementedError) in one file is one
    problem line naming that file by its neutral id, the other file is still scanned (it used to stop the whole scan),
    and pydicom's warnings never reach the terminal."""
    from spine_models.io.fuzz import seeds
    from spine_models.io.study import scan_studies

    good = seeds()["SERIES"][0]
    tag = b"\x20\x00\x0e\x00UI"  # SeriesInstanceUID, explicit VR
    assert tag in good
    folder = tmp_path / "PID-77341_study"
    folder.mkdir()
    (folder / "PID-77341_1.dcm").write_bytes(good)
    (folder / "PID-77341_2.dcm").write_bytes(good.replace(tag, b"\x20\x00\x0e\x00UM"))
    problems: list[str] = []
    studies = scan_studies(folder, problems=problems)
    assert [s.series[0].n_frames for s in studies] == [1]
    assert [s.series[0].files[0].name for s in studies] == ["PID-77341_1.dcm"]
    assert len(problems) == 1 and studies[0].problems == problems
    msg = problems[0]
    assert "\n" not in msg and len(msg) <= 300 and "PID-77341" not in msg and "file-" in msg and "skipped" in msg
    assert capfd.readouterr().err == ""


def test_scan_studies_with_no_usable_file_is_one_line(tmp_path):
    from spine_models.errors import DatasetError
    from spine_models.io.study import scan_studies

    folder = tmp_path / "PID-77341_study"
    folder.mkdir()
    (folder / "PID-77341_1.dcm").write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError) as err:
        scan_studies(folder)
    msg = str(err.value).replace(str(folder), "<dir>")
    assert "\n" not in msg and len(msg) <= 300 and "PID-77341" not in msg and "file-" in msg
