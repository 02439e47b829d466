"""Synthetic lumbar MRI studies: valid DICOM, exact labels, determinism, visible disc differences."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from spine_models.data import mri
from spine_models.data.phantom import mri as ph

pydicom = pytest.importorskip("pydicom")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mri") / "a"
    ph.generate_mri(out, n=2, seed=11, quiet=True)
    return out


def test_every_file_is_valid_dicom(synth: Path) -> None:
    for patient in ("SYN-MRI-0001", "SYN-MRI-0002"):
        for series, (desc, _num) in ph.SERIES.items():
            files = sorted((synth / patient / series).glob("*.dcm"))
            assert len(files) == {"T2_SAG": 15, "T2_AX": 25, "MYELO": 3}[series]
            uids = set()
            for f in files:
                ds = pydicom.dcmread(f)
                assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
                assert ds.Modality == "MR" and ds.SeriesDescription == desc and ds.PatientID == patient
                assert len(ds.ImagePositionPatient) == 3 and len(ds.ImageOrientationPatient) == 6
                assert float(ds.PixelSpacing[0]) > 0 and float(ds.SliceThickness) > 0
                arr = ds.pixel_array
                assert arr.dtype == np.uint16 and arr.max() > 500 and arr.max() <= 4095
                uids.add(ds.SOPInstanceUID)
            assert len(uids) == len(files)
    ax = pydicom.dcmread(synth / "SYN-MRI-0001" / "T2_AX" / "0001.dcm")
    assert (ax.Rows, ax.Columns) == (256, 256)


def test_labels_and_manifest(synth: Path) -> None:
    rows = list(csv.DictReader(open(synth / "labels.csv", encoding="utf-8")))
    assert len(rows) == 10
    for r in rows:
        assert r["disc_state"] in ph.DISC_STATES and int(r["disc_grade"]) == ph.DISC_STATES.index(r["disc_state"])
        assert int(r["axial_frame"]) == mri.select_axial_frame(r["level"])
        assert r["study_name"] == mri.study_image_name(r["patient_id"], "ax", r["level"])
        assert (r["herniation_type"] == "none") == (r["disc_state"] != "herniation")
        if r["disc_state"] == "normal":
            assert (r["scs"], r["rfs"], r["lfs"]) == ("normal", "normal", "normal")
    man = json.loads((synth / "MANIFEST.json").read_text())
    assert man["arguments"] == {"n": 2, "seed": 11, "difficulty": "standard"}
    assert len(man["files"]) == 2 * 43 + 1
    for rel, sha in man["files"].items():
        assert hashlib.sha256((synth / rel).read_bytes()).hexdigest() == sha


def test_same_arguments_byte_identical(synth: Path, tmp_path: Path) -> None:
    ph.generate_mri(tmp_path / "b", n=2, seed=11, quiet=True)
    assert (tmp_path / "b" / "MANIFEST.json").read_bytes() == (synth / "MANIFEST.json").read_bytes()
    ph.generate_mri(tmp_path / "c", n=1, seed=12, quiet=True)
    a = (synth / "SYN-MRI-0001" / "T2_AX" / "0003.dcm").read_bytes()
    assert (tmp_path / "c" / "SYN-MRI-0001" / "T2_AX" / "0003.dcm").read_bytes() != a


def test_rule_frames_cut_discs_and_only_them() -> None:
    p = ph.make_patient("SYN-MRI-0009", 5, 3)
    disc_labels = {ph.ANNULUS} | {ph.NUCLEUS0 + x for x in range(6)}
    for f in range(1, 26):
        lab = ph.render_axial(p, f, labels=True)
        present = set(np.unique(lab).tolist()) & disc_labels
        expected = {mri.select_axial_frame(x) for x in range(1, 6)}
        if f in expected:
            x = [x for x in range(1, 6) if mri.select_axial_frame(x) == f][0]
            assert ph.NUCLEUS0 + x in present, f
        else:
            assert not present, (f, present)
    sag = ph.render_sagittal(p, mri.select_sagittal_frame(15), labels=True)
    assert (sag == ph.CSF).sum() > 500  # the mid-sagittal frame runs through the thecal sac


def test_roi_covers_disc_and_canal() -> None:
    for i in range(4):
        p = ph.make_patient(f"SYN-MRI-{i:04d}", 2, i)
        for x in range(1, 6):
            lab = ph.render_axial(p, mri.select_axial_frame(x), labels=True)
            roi = mri.roi_mask(*lab.shape)
            target = np.isin(lab, [ph.ANNULUS, ph.CSF, ph.NUCLEUS0 + x, ph.HERNIA0 + x])
            assert roi[target].mean() > 0.9, (i, x, roi[target].mean())


def test_disc_states_visibly_differ() -> None:
    states = {1: "normal", 2: "degeneration", 3: "bulge", 4: "herniation"}
    p = ph.make_patient("SYN-MRI-0001", 3, 0, "easy", forced_states=states)
    disc = {d.x: d for d in p.discs}
    means, areas = {}, {}
    for x in range(1, 5):
        f = mri.select_axial_frame(x)
        lab = ph.render_axial(p, f, labels=True)
        img = ph.render_axial(p, f).astype(float)
        means[x] = img[lab == ph.NUCLEUS0 + x].mean()
        areas[x] = (np.isin(lab, [ph.ANNULUS, ph.NUCLEUS0 + x])).sum()
    assert means[2] < 0.5 * means[1]  # degenerated nucleus dark on T2
    assert areas[3] > 1.1 * areas[1]  # bulge: disc extends beyond the endplates
    # herniation: disc material in the canal, taking CSF away
    f = mri.select_axial_frame(4)
    lab = ph.render_axial(p, f, labels=True)
    assert (lab == ph.HERNIA0 + 4).sum() > 20
    p.prims = [pr for pr in p.prims if pr.label != ph.HERNIA0 + 4]
    lab0 = ph.render_axial(p, f, labels=True)
    assert (lab == ph.CSF).sum() < (lab0 == ph.CSF).sum()
    assert disc[4].htype in ph.HERNIATION_TYPES[1:]


def test_load_mri_dataset_on_phantom(synth: Path) -> None:
    ds = mri.load_mri_dataset(synth)
    rows = {r["id"]: r for r in csv.DictReader(open(synth / "labels.csv", encoding="utf-8"))}
    assert len(ds) == 10 and ds.patients == ["SYN-MRI-0001", "SYN-MRI-0002"]
    for s in ds.samples:
        assert s.view == "mri_ax" and s.label == rows[s.id]["disc_state"]
        assert s.meta["frame"] == int(rows[s.id]["axial_frame"])
        assert pydicom.dcmread(s.path).InstanceNumber == s.meta["frame"]
        assert s.meta["study_name"] == rows[s.id]["study_name"]


def test_read_study_round_trip(synth: Path) -> None:
    io = pytest.importorskip("spine_models.io")
    if not hasattr(io, "read_study"):
        pytest.skip("spine_models.io.read_study has not landed yet (IO engineer)")
    study = io.read_study(synth / "SYN-MRI-0001")
    by_desc = {s.description: s for s in study.series}
    assert set(by_desc) >= {"T2 SAG", "T2 AX", "MYELO"}
    ax = by_desc["T2 AX"]
    assert ax.pixels.shape == (25, 256, 256)
    raw = pydicom.dcmread(synth / "SYN-MRI-0001" / "T2_AX" / "0008.dcm").pixel_array.astype(float)
    got = np.asarray(ax.pixels[7], dtype=float)
    assert np.corrcoef(got.ravel(), raw.ravel())[0, 1] > 0.99
