"""De-identification: identifying values never reach repr, to_dict, headers, logs or written files."""
from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest

from spine_models.io import deidentify_dataset, read_image, read_study, remap_uid
from spine_models.io.dicom_build import SAMPLE_SECRET_TOKENS, leaked_tokens, make_dicom, make_identified_cr


def test_tokens_are_really_in_the_file(tmp_path):
    """Guard against a vacuous test: the raw file does hold the identifying values."""
    make_identified_cr(tmp_path / "cr.dcm")
    raw = (tmp_path / "cr.dcm").read_bytes().decode("latin-1")
    assert len(leaked_tokens(raw)) == len(SAMPLE_SECRET_TOKENS)


def test_radiograph_carries_nothing_identifying(tmp_path, caplog):
    make_identified_cr(tmp_path / "cr.dcm")
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = read_image(tmp_path / "cr.dcm")
    shown = repr(r) + json.dumps(r.to_dict()) + str(vars(r).keys()) + json.dumps(r.header)
    assert leaked_tokens(shown) == []
    assert leaked_tokens(caplog.text) == []
    assert leaked_tokens(" ".join(str(w.message) for w in caught)) == []
    assert r.header["SeriesDescription"] == "SPINE AP"  # cleaned, not dropped
    assert "PatientName" not in r.header and "InstitutionName" not in r.header


def test_identifying_file_name_is_replaced(tmp_path):
    make_identified_cr(tmp_path / "QUIZBLORF_ZENOBIA.dcm")
    r = read_image(tmp_path / "QUIZBLORF_ZENOBIA.dcm")
    assert leaked_tokens(r.name) == [] and r.name.endswith(".dcm")


def test_errors_do_not_quote_values(tmp_path):
    from spine_models.errors import SpineInputError

    make_identified_cr(tmp_path / "cr.dcm")
    data = (tmp_path / "cr.dcm").read_bytes()
    for cut in (400, 700, len(data) - 100):
        (tmp_path / "cut.dcm").write_bytes(data[:cut])
        try:
            read_image(tmp_path / "cut.dcm")
        except SpineInputError as exc:
            assert leaked_tokens(str(exc)) == []


def test_uid_remap_is_deterministic_and_groups():
    a = "1.2.826.0.1.3680043.8.498.12345"
    assert remap_uid(a) == remap_uid(a) != a
    assert remap_uid(a) != remap_uid(a + "6")
    assert remap_uid(a).startswith("2.25.")
    assert remap_uid("1.2.840.10008.5.1.4.1.1.4") == "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage: standard


def test_deidentify_dataset_written_file_is_clean(tmp_path):
    import pydicom

    make_identified_cr(tmp_path / "cr.dcm")
    ds = pydicom.dcmread(tmp_path / "cr.dcm")
    ds.add_new(0x00091001, "LO", "QUIZBLORF private")  # private tags go too
    deidentify_dataset(ds)
    ds.save_as(tmp_path / "clean.dcm")
    raw = (tmp_path / "clean.dcm").read_bytes().decode("latin-1")
    assert leaked_tokens(raw) == []
    back = pydicom.dcmread(tmp_path / "clean.dcm")
    assert back.PatientIdentityRemoved == "YES" and back.PatientID.startswith("anon-")
    assert back.Modality == "CR" and back.WindowCenter == 2048
    assert np.array_equal(back.pixel_array, pydicom.dcmread(tmp_path / "cr.dcm").pixel_array)


def test_study_output_clean(tmp_path):
    folder = tmp_path / "QUIZBLORF"
    for i in range(3):
        make_dicom(
            np.full((40, 40), i * 10, np.uint16), folder / f"PIDX-77412093_{i}.dcm", modality="MR",
            series_description="T2 SAG", series_uid="1.2.826.0.1.3680043.8.498.999000111222334",
            study_uid="1.2.826.0.1.3680043.8.498.999000111222333", instance_number=i + 1,
            patient_id="PIDX-77412093", patient_name="QUIZBLORF^ZENOBIA", extra={"InstitutionName": "Vorplex Memorial Infirmary"},
        )
    study = read_study(folder)
    shown = repr(study) + json.dumps(study.to_dict()) + " ".join(s.description + " ".join(s.file_names) + json.dumps(s.header) for s in study.series)
    assert leaked_tokens(shown) == []
    assert study.patient_key.startswith("anon-")
