"""Property-based tests (hypothesis) for the header parsers of spine_models.io.

Each property is the readers' promise on arbitrary input: a parser returns a value of the documented
shape or raises one :class:`SpineInputError` whose message is one line of at most 300 characters; no
other exception, no NaN in JSON, no name or identifying value in what comes out. The seeded fuzz
(spine_models.io.fuzz, bench/fuzz_io.py) covers whole files; these cover the small parsers directly.
"""
from __future__ import annotations

import io
import json
import re
import string
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in requirements.txt; install it to run the property tests")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spine_models.errors import ConfigError, SpineInputError  # noqa: E402

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP",
          b"\x00" * 128 + b"DICM", b"PK\x03\x04", b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  \r\n\x87\n"]
_FORMATS = {"PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "DICOM", "ZIP", "JPEG2000", "UNKNOWN"}


def _one_line(exc: BaseException) -> None:
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg and len(msg) <= 300, msg[:400]


def hostile_bytes(max_size: int = 600) -> st.SearchStrategy[bytes]:
    """Random bytes behind a real format's magic number, so the parsers get past their first check."""
    return st.builds(lambda m, b: m + b, st.sampled_from(_MAGIC), st.binary(max_size=max_size))


@FAST
@given(hostile_bytes())
def test_sniff_format_names_a_known_format(data):
    from spine_models.io.sniff import describe_format, sniff_format

    fmt = sniff_format(data)
    assert fmt in _FORMATS or isinstance(fmt, str) and describe_format(fmt)


@FAST
@given(st.builds(lambda m, b: m + b, st.sampled_from([b"\xff\xd8", b"\xff\xd8\xff\xc0", b"\xff\x4f\xff\x51",
                                                        b"\x00\x00\x00\x0cjP  \r\n\x87\n\xff\x4f\xff\x51"]),
                 st.binary(max_size=300)))
def test_codestream_size_is_none_or_two_sizes(data):
    from spine_models.io.dicom import codestream_size

    size = codestream_size(data)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))


@FAST
@given(hostile_bytes(400))
def test_parse_dicom_parses_or_refuses_in_one_line(data):
    from spine_models.io.dicom import parse_dicom

    try:
        parse_dicom(b"\x00" * 128 + b"DICM" + data, "file-0.dcm")
    except SpineInputError as exc:
        _one_line(exc)


@FAST
@given(hostile_bytes(), st.sampled_from(["PID-77341_07.dcm", "PID-77341_07.png", "PID-77341.jpg", "DOE^JOHN.tif"]))
def test_read_image_bytes_reads_or_refuses_without_the_name(data, name):
    from spine_models.io import read_image_bytes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            rg = read_image_bytes(data, name, max_pixels=1_000_000, min_size=1)
        except SpineInputError as exc:
            _one_line(exc)
            assert "PID-77341" not in str(exc) and "DOE" not in str(exc)
            return
    assert np.isfinite(rg.pixels).all() and 0.0 <= rg.pixels.min() <= rg.pixels.max() <= 1.0
    text = json.dumps(rg.to_dict(), allow_nan=False)
    assert "PID-77341" not in text and "DOE" not in text


_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                     st.text(max_size=12), st.binary(max_size=8), st.none(),
                     st.lists(st.one_of(st.floats(), st.text(max_size=6)), max_size=4))


@FAST
@given(_NUMBERS)
def test_number_parsers_give_finite_numbers_or_none(value):
    from spine_models.io.dicom import _finite_number, _float_tuple, orientation_of

    number = _finite_number(value)
    assert number is None or np.isfinite(number)
    for n in (2, 3, 6):
        out = _float_tuple(value, n)
        assert out is None or (len(out) == n and all(np.isfinite(out)))
    assert orientation_of(value) in (None, "sagittal", "coronal", "axial")


_DS_TEXT = st.one_of(st.sampled_from(["abc", "", "nan", "inf", "-inf", "1e309", "1\\2", "\\", "0", "-0", "1e38", "-1e38"]),
                     st.text(alphabet="0123456789.-+eE\\ ", max_size=16))


@SLOW
@given(slope=_DS_TEXT, intercept=_DS_TEXT, center=_DS_TEXT, width=_DS_TEXT, spacing=_DS_TEXT)
def test_dicom_value_fields_never_escape(slope, intercept, center, width, spacing):
    """Rescale, window and spacing strings of any content: a finite [0, 1] image with notes, or a one-line refusal."""
    from spine_models.io import read_image_bytes
    from spine_models.io.dicom_build import make_dicom

    ds = make_dicom((np.arange(48 * 40).reshape(48, 40) * 7 % 4096).astype(np.uint16), modality="CT", uid_seed="prop")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydicom.dataelem import DataElement

        for tag, vr, value in ((0x00281053, "DS", slope), (0x00281052, "DS", intercept), (0x00281050, "DS", center),
                               (0x00281051, "DS", width), (0x00280030, "DS", spacing)):
            elem = DataElement(tag, vr, b"")
            elem._value = value  # written as given, unvalidated: what a broken modality would store
            ds[tag] = elem
        buf = io.BytesIO()
        try:
            ds.save_as(buf, enforce_file_format=True)
        except (ValueError, TypeError, OverflowError):
            return  # pydicom refuses to write it: no such file can exist
        try:
            rg = read_image_bytes(buf.getvalue(), "PID-77341_07.dcm")
        except SpineInputError as exc:
            _one_line(exc)
            return
    assert np.isfinite(rg.pixels).all() and 0.0 <= rg.pixels.min() <= rg.pixels.max() <= 1.0
    json.dumps(rg.to_dict(), allow_nan=False)


_ID = st.text(alphabet=string.ascii_uppercase + string.digits + "-", min_size=4, max_size=12).filter(
    lambda s: sum(c.isalnum() for c in s) >= 4)


@SLOW
@given(patient_id=_ID, noise=st.text(alphabet=string.ascii_letters + " _-", max_size=10),
       field=st.sampled_from(["ImageType", "Manufacturer", "BodyPartExamined", "ManufacturerModelName", "SeriesDescription"]))
def test_header_dict_scrubs_identifying_values_from_allowed_fields(patient_id, noise, field):
    """A patient ID copied into an allow-listed field never reaches the header output."""
    from spine_models.io.deid import collect_identifiers, header_dict
    from spine_models.io.dicom_build import make_dicom

    ds = make_dicom(np.zeros((32, 32), np.uint16), patient_id=patient_id, uid_seed="prop-ids")
    value = f"{noise}{patient_id.lower() if len(noise) % 2 else patient_id}{noise}"
    with warnings.catch_warnings():  # pydicom warns that the value is not a valid CS: that is the point
        warnings.simplefilter("ignore")
        setattr(ds, field, ["ORIGINAL", value] if field == "ImageType" else value)
    out = json.dumps(header_dict(ds, collect_identifiers(ds)), allow_nan=False)
    assert patient_id.lower() not in out.lower()


@FAST
@given(st.text(max_size=120))
@example("FILE")  # the neutral prefix itself: no leak (found by hypothesis in CI)
def test_display_name_is_neutral_and_one_line(name):
    from spine_models.io.deid import display_name

    shown = display_name(name, show=False)
    assert re.fullmatch(r"file-[0-9a-f]{8}(\.[a-z]+)?", shown), shown
    stem = name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if len(stem) >= 4 and not re.fullmatch(r"[0-9a-f.]*", stem.lower()):
        assert stem.lower() not in shown.lower()[len("file-"):]  # the fixed prefix carries nothing of the name
    opted = display_name(name, show=True)
    assert opted.isprintable() and len(opted) <= 80


@FAST
@given(st.text(max_size=400), st.integers(10, 200),
       st.text(alphabet=string.ascii_letters + string.digits, min_size=3, max_size=12), st.sampled_from("'\"<"))
def test_safe_reason_is_short_printable_and_drops_quoted_values(text, limit, secret, quote):
    from spine_models.io.deid import safe_reason

    out = safe_reason(ValueError(text), limit)
    assert "\n" not in out and len(out) <= limit + len("ValueError: ")
    assert all(32 <= ord(c) < 127 or c == "…" for c in out)
    close = ">" if quote == "<" else quote
    clean = text.replace("'", "").replace('"', "").replace("<", "").replace(">", "")
    quoted = safe_reason(KeyError(f"{clean[:20]} {quote}{secret}{close} is invalid"), limit)
    assert secret not in quoted


@FAST
@given(st.text(max_size=300), st.integers(0, 0xFFFFFFFF))
def test_zip_member_names_stay_inside_the_folder(name, attr):
    import zipfile
    from pathlib import PurePosixPath

    from spine_models.io.archive import _safe_member_name

    info = zipfile.ZipInfo("x")
    info.filename = name  # as a hostile archive's directory would hold it
    info.external_attr = attr
    member = _safe_member_name(info)
    if member is not None:
        path = PurePosixPath(member)
        assert not path.is_absolute() and ".." not in path.parts and "\x00" not in member
        assert not any(part.startswith(".") for part in path.parts)
        assert len(member.encode("utf-8", "replace")) <= 1024


@FAST
@given(st.text(max_size=30))
def test_limit_env_values_give_a_positive_limit_or_one_line(raw):
    import os

    from spine_models.io._limits import ENV_MAX_PIXELS, resolve_max_pixels

    if "\x00" in raw:
        return  # an environment variable cannot hold NUL
    old = os.environ.get(ENV_MAX_PIXELS)
    os.environ[ENV_MAX_PIXELS] = raw
    try:
        value = resolve_max_pixels()
        assert isinstance(value, int) and value > 0
    except ConfigError as exc:
        _one_line(exc)
    finally:
        if old is None:
            os.environ.pop(ENV_MAX_PIXELS, None)
        else:
            os.environ[ENV_MAX_PIXELS] = old
