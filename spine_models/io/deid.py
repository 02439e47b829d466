"""De-identification on arrival (DICOM PS3.15 Annex E basic profile, plus Clean Descriptors).

Why: nothing identifying may reach an object's repr, ``to_dict()``, the ``info`` output, logs or any
file the package writes. The readers never hand a pydicom ``Dataset`` onwards: they copy out an
allow-list of technical fields (:func:`header_dict`) and replace UIDs by a deterministic hash
(:func:`remap_uid`) so that slices still group into series and series into studies.
:func:`deidentify_dataset` applies the basic profile to a ``Dataset`` in place for code that writes
DICOM files.

Profile as implemented (PS3.15 E.1-1 basic profile, options noted):
- removed: every PN element (patient, physicians, operators, ...), every element whose keyword names
  the patient (birth date/time, age, sex, address, telephone, ethnic group, ...) except
  PatientOrientation/PatientPosition, institution, station, device serial, accession, study/request
  IDs, all dates and times (DA/DT/TM), comments and free text (keywords containing ``Comment``,
  ``Address``, ``Telephone``, ``Institution``, ``Physician``, ``Operator``), protocol and study
  descriptions, private tags, overlay comments/labels;
- replaced: PatientID and PatientName by a salted-hash pseudonym (``anon-<12 hex>``), every
  non-standard UID by ``2.25.<hash>`` (the same input UID always gives the same output);
- kept, cleaned (Clean Descriptors option): SeriesDescription, needed to pick T2 SAG / T2 AX series;
  any identifying value found elsewhere in the header is cut out of it.
The hash salt is env ``SPINE_MODELS_DEID_SALT`` (set a secret one for real deployments: patient IDs
are low-entropy and a public salt allows dictionary look-ups).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any, Iterable

__all__ = [
    "IDENTIFYING_KEYWORDS",
    "SAFE_HEADER_KEYWORDS",
    "remap_uid",
    "pseudonym",
    "collect_identifiers",
    "scrub_text",
    "header_dict",
    "deidentify_dataset",
    "display_name",
    "show_names",
    "safe_reason",
    "SHOW_NAMES_ENV",
]

_DEFAULT_SALT = "spine-models-deid-v1"
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "IS", "DS", "AT"})
_VALID_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

# PS3.15 E.1-1 basic profile attributes (the ones our inputs carry in practice), by keyword
IDENTIFYING_KEYWORDS: frozenset[str] = frozenset(
    """
    AccessionNumber AcquisitionComments AcquisitionDeviceProcessingDescription AdmissionID AdmittingDiagnosesDescription
    AdditionalPatientHistory Allergies BranchOfService ConsultingPhysicianName CountryOfResidence CurrentPatientLocation
    DerivationDescription DeviceSerialNumber DeviceUID DischargeDiagnosisDescription EthnicGroup FillerOrderNumberImagingServiceRequest
    FrameComments GantryID GeneratorID ImageComments InstitutionAddress InstitutionName InstitutionalDepartmentName
    IssuerOfPatientID MedicalAlerts MedicalRecordLocator MilitaryRank NameOfPhysiciansReadingStudy Occupation OperatorsName
    OtherPatientIDs OtherPatientIDsSequence OtherPatientNames OverlayComments OverlayDescription OverlayLabel
    PatientAddress PatientAge PatientBirthDate PatientBirthName PatientBirthTime PatientComments PatientInsurancePlanCodeSequence
    PatientMotherBirthName PatientReligiousPreference PatientSex PatientSize PatientState PatientTelephoneNumbers PatientWeight
    PerformedLocation PerformedProcedureStepDescription PerformedProcedureStepID PerformedStationAETitle PerformedStationName
    PerformingPhysicianName PhysiciansOfRecord PlacerOrderNumberImagingServiceRequest PregnancyStatus ProtocolName
    ReferringPhysicianAddress ReferringPhysicianName ReferringPhysicianTelephoneNumbers RequestAttributesSequence
    RequestedProcedureDescription RequestedProcedureID RequestingPhysician RequestingService ResultsID ScheduledProcedureStepID
    SmokingStatus SpecialNeeds StationName StudyComments StudyDescription StudyID TextComments TextString
    AdmittingDate AdmittingTime AcquisitionDate AcquisitionDateTime AcquisitionTime ContentDate ContentTime SeriesDate SeriesTime
    StudyDate StudyTime InstanceCreationDate InstanceCreationTime PatientName PatientID
    """.split()
)

_IDENTIFYING_FRAGMENTS = ("Comment", "Address", "Telephone", "Institution", "Physician", "Operator")
_PATIENT_KEEP = frozenset({"PatientOrientation", "PatientPosition"})

# the allow-list copied into Radiograph.header / Series.header (technical, non-identifying)
SAFE_HEADER_KEYWORDS: tuple[str, ...] = (
    "Modality", "BodyPartExamined", "ViewPosition", "ImageLaterality", "Laterality", "PatientOrientation",
    "PatientPosition", "ImageType", "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation", "PixelSpacing",
    "ImagerPixelSpacing", "SliceThickness", "SpacingBetweenSlices", "ImageOrientationPatient",
    "ImagePositionPatient", "WindowCenter", "WindowWidth", "VOILUTFunction", "RescaleSlope", "RescaleIntercept",
    "RescaleType", "Manufacturer", "ManufacturerModelName", "KVP", "ExposureTime", "XRayTubeCurrent", "Exposure",
    "MagneticFieldStrength", "RepetitionTime", "EchoTime", "ScanningSequence", "SequenceVariant", "SeriesNumber",
    "InstanceNumber", "SeriesDescription", "LossyImageCompression",
)


def _salt() -> str:
    return os.environ.get("SPINE_MODELS_DEID_SALT", _DEFAULT_SALT)


def remap_uid(uid: str) -> str:
    """Deterministic replacement UID (``2.25.<hash>``); standard UIDs (SOP classes, syntaxes) pass through."""
    from pydicom.uid import UID, generate_uid

    uid = str(uid).strip().rstrip("\x00")
    if not uid:
        return uid
    if _VALID_UID.match(uid) and UID(uid).name != uid:  # a UID from the standard's dictionary: not identifying
        return uid
    return str(generate_uid(prefix="2.25.", entropy_srcs=[_salt(), uid]))


def pseudonym(value: str) -> str:
    """Stable pseudonymous key for a patient ID (groups a patient's images without revealing the ID)."""
    digest = hashlib.sha256(f"{_salt()}\x00{value}".encode("utf-8", "replace")).hexdigest()
    return f"anon-{digest[:12]}"


SHOW_NAMES_ENV = "SPINE_MODELS_SHOW_NAMES"
_SAFE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .jfif .tif .tiff .bmp .gif .webp .dcm .dicom .dic .ima .zip .pdf .txt .csv .json .nii .gz".split()
)


def show_names(show: bool | None = None) -> bool:
    """Whether the user opted in to real file / member / folder names (argument, else env ``SPINE_MODELS_SHOW_NAMES=1``)."""
    if show is not None:
        return bool(show)
    return os.environ.get(SHOW_NAMES_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def display_name(name: str, *, show: bool | None = None, kind: str = "file") -> str:
    """The name an input carries in messages and outputs: ``file-<8 hex>.<ext>`` by default.

    Why: file, ZIP-member and folder names are often a patient's name or ID (``PID-77341_07.dcm``).
    The id is a salted hash of the full name, so one name always gets the same id (a user can match
    messages to inputs) without revealing it. With the opt-in (:func:`show_names`) the base name is
    kept, cut to 80 printable characters.
    """
    text = str(name).replace("\\", "/")
    base = text.rstrip("/").rsplit("/", 1)[-1]
    if show_names(show):
        clean = "".join(c if c.isprintable() else "?" for c in base)[:80]
        return clean or kind
    suffix = ""
    if "." in base:
        candidate = "." + base.rsplit(".", 1)[-1].lower()
        suffix = candidate if candidate in _SAFE_SUFFIXES else ""
    digest = hashlib.sha256(f"{_salt()}\x00name\x00{text}".encode("utf-8", "replace")).hexdigest()
    return f"{kind}-{digest[:8]}{suffix}"


_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\"|<[^>]*>)")


def safe_reason(exc: BaseException, limit: int = 80) -> str:
    """A third-party exception as a short, printable, quote-free phrase for a one-line message.

    Why: library messages can quote raw bytes of the file, header values (names, IDs) or object reprs;
    quoted parts are dropped, only printable ASCII is kept and the length is capped.
    """
    first = (str(exc).strip().splitlines() or [""])[0]
    first = _QUOTED.sub("…", first)
    first = "".join(c for c in first if 32 <= ord(c) < 127 or c == "…")
    first = " ".join(first.split())
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    kind = type(exc).__name__
    return f"{kind}: {first}" if first else kind


def _is_identifying(keyword: str, vr: str) -> bool:
    if not keyword:
        return False
    if keyword in IDENTIFYING_KEYWORDS or vr == "PN" or vr in ("DA", "DT", "TM"):
        return True
    if keyword.startswith("Patient") and keyword not in _PATIENT_KEEP:
        return True
    return any(fragment in keyword for fragment in _IDENTIFYING_FRAGMENTS)


def _values_of(value: Any) -> Iterable[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def collect_identifiers(ds: Any) -> set[str]:
    """Every identifying string in a Dataset (and its sequences): used to scrub descriptors and file names.

    Names are split into their components (``DOE^JOHN`` → ``DOE``, ``JOHN``) so a description like
    "john doe t2 sag" is cleaned too; components shorter than 3 characters are ignored.
    """
    found: set[str] = set()

    def visit(dataset: Any) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            if elem.VR == "UI":
                uid = str(elem.value or "").strip()
                if uid and remap_uid(uid) != uid:
                    found.add(uid)
                continue
            if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
                continue
            if not (_is_identifying(elem.keyword, elem.VR) or elem.tag.is_private):
                continue
            for text in _values_of(elem.value):
                text = text.strip()
                if len(text) >= 3:
                    found.add(text)
                for part in re.split(r"[\^\s,=]+", text):
                    if len(part) >= 3:
                        found.add(part)

    visit(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        found.add(str(meta.MediaStorageSOPInstanceUID))
    return found


def scrub_text(text: str, identifiers: Iterable[str]) -> str:
    """``text`` with every identifying value (case-insensitive) cut out and whitespace tidied."""
    out = str(text)
    for value in sorted(identifiers, key=len, reverse=True):
        if value:
            out = re.sub(re.escape(value), "", out, flags=re.IGNORECASE)
    return " ".join(out.replace("^", " ").split())


def _json_value(value: Any) -> Any:
    """pydicom values (DSfloat, IS, PersonName, MultiValue) → plain JSON types."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_json_value(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None  # NaN/inf are not JSON
    if isinstance(value, (bytes, bytearray)):
        return None  # an OB/UN-encoded value: binary, never shown
    return "".join(c for c in str(value).strip() if c.isprintable())[:200]


def _scrub_value(value: Any, ids: set[str]) -> Any:
    """An allow-listed text value with every identifying value cut out (a patient ID put in ImageType)."""
    if isinstance(value, list):
        return [_scrub_value(v, ids) for v in value]
    if not isinstance(value, str) or not value:
        return value
    lowered = value.lower()
    if not any(len(i) >= 3 and i.lower() in lowered for i in ids):
        return value
    return scrub_text(value, ids) or "(removed)"


def header_dict(ds: Any, identifiers: Iterable[str] | None = None) -> dict[str, Any]:
    """The allow-listed, JSON-ready header fields for the UI's header panel (nothing identifying)."""
    ids = set(identifiers) if identifiers is not None else collect_identifiers(ds)
    out: dict[str, Any] = {}
    for keyword in SAFE_HEADER_KEYWORDS:
        if keyword not in ds:
            continue
        elem = ds[keyword]
        if elem.value is None or elem.value == "" or elem.VR == "SQ":
            continue
        value = _json_value(elem.value)
        if keyword == "SeriesDescription":
            value = scrub_text(str(value), ids)
        elif elem.VR not in _NUMERIC_VRS:
            value = _scrub_value(value, ids)
        if value is None or value == []:
            continue
        out[keyword] = value
    for keyword in ("SOPClassUID",):
        if keyword in ds:
            from pydicom.uid import UID

            out[keyword] = uid_name(ds[keyword].value)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        out["TransferSyntax"] = uid_name(meta["TransferSyntaxUID"].value)
    return out


def uid_name(value: Any) -> str:
    """A standard UID's name (SOP class, transfer syntax); anything else is never echoed (raw bytes, IDs)."""
    from pydicom.uid import UID

    text = str(value or "").strip().rstrip("\x00")
    if len(text) > 64 or not _VALID_UID.match(text):
        return "(invalid UID)"
    name = UID(text).name
    return name if name != text else "(unknown UID)"


def deidentify_dataset(ds: Any) -> Any:
    """Apply the profile above to a pydicom Dataset in place (sequences too) and return it."""
    ids = collect_identifiers(ds)
    patient_key = pseudonym(str(ds.get("PatientID", "") or ""))
    ds.remove_private_tags()

    def visit(dataset: Any) -> None:
        for elem in list(dataset):
            keyword, vr = elem.keyword, elem.VR
            if vr == "SQ":
                if _is_identifying(keyword, vr):
                    del dataset[elem.tag]
                else:
                    for item in elem.value or []:
                        visit(item)
                continue
            if vr == "UI":
                values = [remap_uid(v) for v in _values_of(elem.value)]
                elem.value = values if len(values) > 1 else (values[0] if values else "")
                continue
            if keyword in ("PatientID", "PatientName"):
                elem.value = patient_key
                continue
            if _is_identifying(keyword, vr) or (elem.tag.group & 0xFF00) == 0x6000 and vr in ("LO", "LT", "SH", "CS"):
                del dataset[elem.tag]
                continue
            if keyword == "SeriesDescription":
                elem.value = scrub_text(str(elem.value), ids)

    visit(ds)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "spine_models basic profile + clean descriptors"
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = remap_uid(str(meta.MediaStorageSOPInstanceUID))
    return ds
