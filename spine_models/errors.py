"""Exception hierarchy.

Why: the CLI and the app must tell a user's bad input (exit 2, one line, no traceback) apart from
our own bugs (exit 1). Every message names the offending file or value and says what would fix it.
"""
from __future__ import annotations

__all__ = [
    "SpineError",
    "SpineInputError",
    "EmptyFileError",
    "TruncatedFileError",
    "CorruptFileError",
    "UnsupportedFormatError",
    "UnsupportedPhotometricError",
    "UnsupportedTransferSyntaxError",
    "MissingPixelDataError",
    "ImageTooSmallError",
    "DecompressionBombError",
    "DatasetError",
    "LeakageError",
    "ModelNotFoundError",
    "WeightsNotAvailableError",
    "ConfigError",
]


class SpineError(Exception):
    """Base class of every error this package raises on purpose."""


class SpineInputError(SpineError, ValueError):
    """Bad input from the user: a file, a folder, an argument. The CLI exits 2 on these."""

    def __init__(self, message: str, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        text = f"{self.path}: {message}" if self.path and not message.startswith(self.path) else message
        # one line only: the CLI prints str(exc) as is
        super().__init__(" ".join(text.split()))


class EmptyFileError(SpineInputError):
    """The file has zero bytes."""


class TruncatedFileError(SpineInputError):
    """The file ends before its declared content does."""


class CorruptFileError(SpineInputError):
    """The bytes do not decode as the format they claim to be."""


class UnsupportedFormatError(SpineInputError):
    """Not an image format we read (or a wrong extension hiding one)."""


class UnsupportedPhotometricError(SpineInputError):
    """A DICOM PhotometricInterpretation we cannot turn into a grayscale radiograph."""


class UnsupportedTransferSyntaxError(SpineInputError):
    """A DICOM transfer syntax no installed decoder handles; the message names the plugin that would."""


class MissingPixelDataError(SpineInputError):
    """A DICOM file without PixelData (e.g. a structured report or a presentation state)."""


class ImageTooSmallError(SpineInputError):
    """Width or height under the minimum (32 px by default)."""


class DecompressionBombError(SpineInputError):
    """Declared pixel count above the configured limit; refused before decoding."""


class DatasetError(SpineInputError):
    """A --data folder, ZIP or file that does not hold a dataset we can read."""


class LeakageError(SpineError):
    """One patient or a near-duplicate image sits on both sides of a split."""


class ModelNotFoundError(SpineInputError, KeyError):
    """Unknown architecture or model id; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class WeightsNotAvailableError(SpineInputError):
    """Pretrained or shipped weights were asked for but no local file exists (we never download)."""


class ConfigError(SpineInputError):
    """A configuration key or value that does not validate."""
