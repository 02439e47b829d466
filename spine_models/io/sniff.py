"""Tell a file's real format from its first bytes, never from its extension.

Why: users rename files (a JPEG saved as ``.png``, a DICOM without extension, a PDF report named
``.dcm``); the message must say what the file really is.
"""
from __future__ import annotations

__all__ = ["sniff_format", "describe_format", "READABLE_FORMATS", "EXTENSION_FORMATS"]

# formats read_image decodes (PIL format names, plus "DICOM")
READABLE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "DICOM")

EXTENSION_FORMATS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".tif": "TIFF",
    ".tiff": "TIFF", ".bmp": "BMP", ".gif": "GIF", ".webp": "WEBP", ".dcm": "DICOM", ".dicom": "DICOM",
    ".dic": "DICOM", ".ima": "DICOM", ".zip": "ZIP", ".pdf": "PDF", ".txt": "TEXT", ".csv": "TEXT",
    ".json": "TEXT", ".nii": "NIFTI", ".gz": "GZIP",
}

_DESCRIPTIONS = {
    "PNG": "a PNG image", "JPEG": "a JPEG image", "TIFF": "a TIFF image", "BMP": "a BMP image",
    "GIF": "a GIF image", "WEBP": "a WebP image", "DICOM": "a DICOM file", "ZIP": "a ZIP archive",
    "PDF": "a PDF document", "GZIP": "a gzip archive", "JPEG2000": "a raw JPEG 2000 codestream",
    "NIFTI": "a NIfTI volume", "HTML": "an HTML page", "SVG": "an SVG drawing", "TEXT": "a text file",
    "EMPTY": "an empty file", "UNKNOWN": "not a recognised image format", "RAR": "a RAR archive",
    "7Z": "a 7-Zip archive", "HEIF": "a HEIF/HEIC photo", "MP4": "a video", "XML": "an XML document",
}

_DICOM_GROUP_STARTS = (b"\x02\x00", b"\x08\x00")  # implicit/explicit LE data set without preamble


def sniff_format(head: bytes) -> str:
    """Format name of the content from its first bytes (>= 512 recommended)."""
    if not head:
        return "EMPTY"
    if len(head) >= 132 and head[128:132] == b"DICM":  # first: a DICOM preamble may look like TIFF
        return "DICOM"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "ZIP"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head[:2] == b"\x1f\x8b":
        return "GZIP"
    if head[:4] == b"Rar!":
        return "RAR"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7Z"
    if head[4:8] == b"ftyp":
        return "HEIF" if head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif") else "MP4"
    if head[:4] == b"\xff\x4f\xff\x51" or head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
        return "JPEG2000"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "NIFTI"
    if _looks_like_bare_dicom(head):
        return "DICOM"
    if _looks_like_text(head):
        low = head[:256].lstrip().lower()
        if low.startswith((b"<!doctype html", b"<html")):
            return "HTML"
        if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in head.lower()):
            return "SVG"
        if low.startswith(b"<?xml"):
            return "XML"
        return "TEXT"
    return "UNKNOWN"


def describe_format(fmt: str) -> str:
    """Human phrase for a sniffed format ("a PDF document")."""
    return _DESCRIPTIONS.get(fmt, fmt)


def _looks_like_bare_dicom(head: bytes) -> bool:
    """DICOM written without the 128-byte preamble (old ACR-NEMA style): starts with a group 0002/0008 tag."""
    if len(head) < 8 or head[:2] not in _DICOM_GROUP_STARTS:
        return False
    element = int.from_bytes(head[2:4], "little")
    vr = head[4:6]
    explicit = vr.isalpha() and vr.isupper()
    length = int.from_bytes(head[4:8], "little")
    return element < 0x1000 and (explicit or length < 1024)


def _looks_like_text(head: bytes) -> bool:
    sample = head[:4096]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # a multi-byte char cut at the end of the sample is fine
            return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) or b >= 128 for b in sample)
    return printable / len(sample) > 0.95
