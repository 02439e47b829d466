"""Write valid DICOM files from numpy arrays (tests, phantoms, fixtures).

Why: tests across the package need DICOMs with exact properties (MONOCHROME1 with a window,
12-in-16-bit, multi-frame, both spacing tags, identifying tags, compressed transfer syntaxes), and
pydicom's boilerplate (file meta, SOP class, pixel module) is easy to get subtly wrong.

Example::

    from spine_models.io.dicom_build import make_dicom
    ds = make_dicom(pixels_uint16, path="cr.dcm", modality="CR", photometric="MONOCHROME1",
                    bits_stored=12, window=(2048, 4096), imager_pixel_spacing=(0.15, 0.15),
                    extra={"PatientName": "DOE^JANE"}, uid_seed="case-1")

``uid_seed`` makes every UID (and so the file) deterministic; without it UIDs are random.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "make_dicom",
    "make_identified_cr",
    "leaked_tokens",
    "SOP_CLASSES",
    "SAMPLE_IDENTIFIERS",
    "SAMPLE_SECRET_TOKENS",
]

SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}


def _uid(seed: str | None, what: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[seed, what])) if seed is not None else str(generate_uid())


def make_dicom(
    pixels: np.ndarray,
    path: str | Path | None = None,
    *,
    modality: str = "DX",
    photometric: str | None = None,
    bits_stored: int | None = None,
    transfer_syntax: str | None = None,
    pixel_spacing: Sequence[float] | None = None,
    imager_pixel_spacing: Sequence[float] | None = None,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    view_position: str | None = None,
    series_description: str | None = None,
    series_number: int | None = 1,
    instance_number: int | None = 1,
    image_position: Sequence[float] | None = None,
    image_orientation: Sequence[float] | None = None,
    slice_thickness: float | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "ANON",
    patient_name: str = "ANON",
    uid_seed: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """Build (and write when ``path`` is given) a DICOM dataset holding ``pixels``.

    ``pixels``: (H, W) or (F, H, W) integer array for grayscale (uint8/uint16/int16), or (H, W, 3)
    uint8 with ``photometric="RGB"``. ``bits_stored`` defaults to the dtype's width (12 gives
    12-in-16-bit). ``transfer_syntax``: a UID (default Explicit VR Little Endian); compressed syntaxes
    are encoded with pydicom's encoders (RLE always; JPEG-LS / JPEG 2000 need their plugins).
    ``extra``: any further keyword → value (e.g. identifying tags for de-identification tests).
    Returns the pydicom Dataset.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UID

    arr = np.asarray(pixels)
    color = arr.ndim == 3 and arr.shape[-1] == 3 and (photometric or "").upper() in ("RGB", "YBR_FULL")
    if arr.dtype.kind not in "ui":
        raise ValueError(f"pixels dtype {arr.dtype} must be an integer type (uint8, uint16, int16)")
    if arr.ndim not in (2, 3):
        raise ValueError(f"pixels shape {arr.shape} must be (H, W), (F, H, W) or (H, W, 3)")
    frames = arr.shape[0] if (arr.ndim == 3 and not color) else 1
    rows, cols = (arr.shape[-2], arr.shape[-1]) if not color else arr.shape[:2]
    allocated = 8 if arr.dtype.itemsize == 1 else 16
    if arr.dtype.itemsize > 2:
        raise ValueError(f"pixels dtype {arr.dtype}: use 8- or 16-bit integers")
    stored = int(bits_stored or allocated)
    signed = arr.dtype.kind == "i"
    photometric = (photometric or ("RGB" if color else "MONOCHROME2")).upper()
    modality = modality.upper()

    meta = FileMetaDataset()
    sop_class = SOP_CLASSES.get(modality, SOP_CLASSES["OT"])
    sop_instance = _uid(uid_seed, "sop")
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("1.2.826.0.1.3680043.8.498.1")  # pydicom's root

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = study_uid or _uid(uid_seed, "study")
    ds.SeriesInstanceUID = series_uid or _uid(uid_seed, "series")
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if series_number is not None:
        ds.SeriesNumber = series_number
    if instance_number is not None:
        ds.InstanceNumber = instance_number
    if series_description is not None:
        ds.SeriesDescription = series_description
    if view_position is not None:
        ds.ViewPosition = view_position
    if image_position is not None:
        ds.ImagePositionPatient = [float(v) for v in image_position]
    if image_orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in image_orientation]
    if slice_thickness is not None:
        ds.SliceThickness = float(slice_thickness)
    if pixel_spacing is not None:
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = [float(v) for v in imager_pixel_spacing]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = float(rescale[0]), float(rescale[1])
        ds.RescaleType = "US"

    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if color else 1
    if color:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    dtype = np.dtype(("<i" if signed else "<u") + str(allocated // 8))
    ds.PixelData = np.ascontiguousarray(arr.astype(dtype)).tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)

    syntax = UID(transfer_syntax or ExplicitVRLittleEndian)
    if syntax.is_compressed:
        ds.compress(syntax)
    else:
        meta.TransferSyntaxUID = syntax
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return ds


# ---- a sample "identified" film for de-identification tests (app, CLI, io) ----------------------

SAMPLE_IDENTIFIERS: dict[str, str] = {
    "PatientName": "QUIZBLORF^ZENOBIA",
    "PatientID": "PIDX-77412093",
    "PatientBirthDate": "19410723",
    "InstitutionName": "Vorplex Memorial Infirmary",
    "AccessionNumber": "ACCQ-55190377",
    "ReferringPhysicianName": "GRUNDLEWICK^OTTO",
    "OperatorsName": "TECHNOVAX^PRIMA",
    "ImageComments": "Quizblorf follow-up glimmerbeak",
    "StudyID": "STDY-88123",
    "InstitutionAddress": "17 Snorkelvane Rd",
    "OtherPatientIDs": "OPID-31415926",
    "StudyDate": "20190411",
}
SAMPLE_STUDY_UID = "1.2.826.0.1.3680043.8.498.999000111222333"
SAMPLE_SERIES_UID = "1.2.826.0.1.3680043.8.498.999000111222334"
# substrings that must never appear in anything the package shows, logs or writes
SAMPLE_SECRET_TOKENS: tuple[str, ...] = (
    "QUIZBLORF", "ZENOBIA", "PIDX-77412093", "19410723", "Vorplex", "ACCQ-55190377", "GRUNDLEWICK",
    "TECHNOVAX", "glimmerbeak", "STDY-88123", "Snorkelvane", "OPID-31415926", "20190411",
    SAMPLE_STUDY_UID, SAMPLE_SERIES_UID,
)


def make_identified_cr(path: str | Path, *, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Write the issue's acceptance film: 16-bit MONOCHROME1 CR, 12 bits stored, VOI window
    (center 2048, width 2048), ImagerPixelSpacing 0.15 mm, view AP, and every tag of
    :data:`SAMPLE_IDENTIFIERS` set. Stored 0 in the top-left 8×8 corner, 4095 in the bottom-right.
    Returns the stored values."""
    rng = np.random.default_rng(3)
    stored = (rng.random(size) * 3000 + 500).astype(np.uint16)
    stored[:8, :8] = 0
    stored[-8:, -8:] = 4095
    ids = SAMPLE_IDENTIFIERS
    make_dicom(
        stored, path, modality="CR", photometric="MONOCHROME1", bits_stored=12, window=(2048, 2048),
        imager_pixel_spacing=(0.15, 0.15), view_position="AP", series_description="SPINE AP QUIZBLORF",
        study_uid=SAMPLE_STUDY_UID, series_uid=SAMPLE_SERIES_UID, patient_id=ids["PatientID"],
        patient_name=ids["PatientName"], extra={k: v for k, v in ids.items() if k not in ("PatientID", "PatientName")},
        uid_seed="identified-cr",
    )
    return stored


def leaked_tokens(text: str) -> list[str]:
    """The :data:`SAMPLE_SECRET_TOKENS` found in ``text`` (case-insensitive); [] means clean."""
    low = text.lower()
    return [t for t in SAMPLE_SECRET_TOKENS if t.lower() in low]
