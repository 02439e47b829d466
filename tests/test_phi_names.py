"""Issue 17 item 5: DICOMs, files, ZIPs and folders named after a patient leave no identifying string in
`spine-models info` output (names are neutral ids unless --show-names; header fields are scrubbed)."""
from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest

from spine_models.cli import main
from spine_models.io.dicom_build import SAMPLE_IDENTIFIERS, leaked_tokens, make_dicom

TOKEN = "PID-77341"


def _dicom(path, k=0, **kw):
    ids = {k2: v for k2, v in SAMPLE_IDENTIFIERS.items() if k2 not in ("PatientID", "PatientName")}
    ds = make_dicom((np.arange(48 * 40).reshape(48, 40) * (k + 3) % 4000).astype(np.uint16), path, modality="MR",
                    patient_id=SAMPLE_IDENTIFIERS["PatientID"], patient_name=SAMPLE_IDENTIFIERS["PatientName"],
                    series_description="T2 SAG", image_position=(3.0 * k, 0, 0), image_orientation=(0, 1, 0, 0, 0, -1),
                    instance_number=k + 1, study_uid="1.2.826.0.1.3680043.8.498.1", series_uid="1.2.826.0.1.3680043.8.498.2",
                    uid_seed=f"names-{k}", extra=ids, **kw)
    with warnings.catch_warnings():  # an invalid CS value on purpose
        warnings.simplefilter("ignore")
        # an identifying value copied into allow-listed header fields
        ds.ImageType = ["ORIGINAL", SAMPLE_IDENTIFIERS["PatientID"]]
        ds.BodyPartExamined = SAMPLE_IDENTIFIERS["PatientID"]
    ds.save_as(path, enforce_file_format=True)
    return path


def _clean(text: str) -> None:
    assert TOKEN.lower() not in text.lower(), text[:300]
    assert not leaked_tokens(text), leaked_tokens(text)


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / f"{TOKEN}_study"
    folder.mkdir()
    for k in range(3):
        _dicom(folder / f"{TOKEN}_{k:02d}.dcm", k)
    (folder / f"{TOKEN}_broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage")
    archive = tmp_path / f"{TOKEN}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f"{TOKEN}/{f.name}")
        zf.writestr(f"{TOKEN}/{TOKEN}_bad.dcm", b"not a dicom at all")
    png = tmp_path / f"{TOKEN}_07.png"
    import cv2

    cv2.imwrite(str(png), (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8))
    return {"dicom": folder / f"{TOKEN}_00.dcm", "folder": folder, "zip": archive, "png": png}


@pytest.mark.parametrize("kind", ["dicom", "folder", "zip", "png"])
def test_info_output_carries_no_name_or_identifier(inputs, kind, capsys):
    assert main(["info", str(inputs[kind]), "--header"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    _clean(cap.out)
    _clean(cap.err)
    if kind in ("folder", "zip"):
        assert out["problems"], "the broken member must be reported"  # and reported without its name (checked above)


def test_info_refusal_names_only_the_typed_argument(tmp_path, capsys):
    bad = tmp_path / f"{TOKEN}_x.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    _clean(err.replace(str(bad), "<arg>"))


def test_show_names_opt_in_keeps_member_names(inputs, capsys):
    assert main(["info", str(inputs["zip"]), "--show-names"]) == 0
    assert TOKEN in capsys.readouterr().out  # the user asked for names: the problems list names the member
