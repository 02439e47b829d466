"""Is a measurement a finding? One rule for every place a Cobb angle or a slip is shown.

Why: the brief's rule -- a number outside its physical range, or a measurement that failed, is never
shown as a finding. The segmentation engine attaches ``reliable`` / ``warnings`` (Cobb: plausibility of
the column; slip: :func:`spine_models.measure.slip_from_mask`) or a ``note`` with ``cobb_deg`` /
``slip_percent`` None when nothing could be measured. The page, the JSON and CSV downloads, the
clinician report and the classifiers that consume a measurement all ask :func:`cobb_read` /
:func:`slip_read` and show "cannot measure — <reason>" instead of the number when the read is not one.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from spine_models.measure.slip import SLIP_PLAUSIBLE_PERCENT

__all__ = ["COBB_RANGE_DEG", "Read", "cobb_read", "slip_read", "cannot_measure", "public_measurement", "public_result",
           "failed_measurement", "measured"]

_log = logging.getLogger(__name__)

COBB_RANGE_DEG = (0.0, 90.0)  # the angle between two lines
SLIP_RANGE_PERCENT = SLIP_PLAUSIBLE_PERCENT  # one range: the slip measurement flags the same one
_VALUE = {"cobb": "cobb_deg", "slip": "slip_percent"}
# fields that carry the number (or parts of it) and so are withheld when the read is not a finding
_WITHHELD = {"cobb": ("cobb_deg", "band", "curves", "centreline_deg", "centreline"),
             "slip": ("slip_percent", "meyerding_grade", "meyerding", "level", "levels")}


def cannot_measure(reason: str) -> str:
    """The one wording shown instead of a number."""
    return f"cannot measure — {reason}"


@dataclass(frozen=True)
class Read:
    """A measurement as a reader may see it: ``value`` only when it is a finding, else ``reason``."""

    kind: str  # "cobb" | "slip"
    value: float | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.reason

    @property
    def text(self) -> str:
        """"23.4°" / "12.0 %" for a finding, else "cannot measure — <reason>"."""
        if not self.ok:
            return cannot_measure(self.reason)
        return f"{self.value:.1f}°" if self.kind == "cobb" else f"{self.value:.1f} %"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def _read(kind: str, d: Mapping[str, Any] | None, rng: tuple[float, float], unit: str) -> Read:
    if not d:
        return Read(kind, None, "no vertebral body found")
    raw = d.get(_VALUE[kind])
    if raw is None:
        return Read(kind, None, str(d.get("note") or "no vertebral body found"))
    v = _number(raw)
    if v is None:
        return Read(kind, None, f"the measured value {raw!r} is not a number")
    if d.get("reliable") is False:
        why = "; ".join(str(w) for w in d.get("warnings") or []) or "the read failed its plausibility checks"
        return Read(kind, None, why)
    if not rng[0] <= v <= rng[1]:
        return Read(kind, None, f"{v:.1f}{unit} lies outside the physical range {rng[0]:.0f} to {rng[1]:.0f}{unit}")
    return Read(kind, v)


def cobb_read(d: Mapping[str, Any] | None) -> Read:
    """A Cobb dict (``CobbResult.to_dict()`` + the engine's ``reliable`` / ``warnings`` / ``note``)."""
    return _read("cobb", d, COBB_RANGE_DEG, "°")


def slip_read(d: Mapping[str, Any] | None) -> Read:
    """A slip dict (:func:`spine_models.measure.slip_from_mask`, + the engine's ``note``)."""
    return _read("slip", d, SLIP_RANGE_PERCENT, " %")


def public_measurement(kind: str, d: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A measurement dict safe to hand out (JSON download, report): when the read is not a finding its
    number fields are None, ``status`` says "cannot measure — <reason>", and what the algorithm returned
    is kept under ``unreliable_read`` for a researcher (never at the keys a reader takes as the value)."""
    if d is None:
        return None
    r = cobb_read(d) if kind == "cobb" else slip_read(d)
    out = dict(d)
    if r.ok:
        out["status"] = "measured"
        return out
    held = {k: out[k] for k in _WITHHELD[kind] if out.get(k) is not None}
    for k in _WITHHELD[kind]:
        if k in out:
            out[k] = [] if k == "curves" else {} if k == "levels" else None
    out["status"] = r.text
    out["reliable"] = False
    if held:
        out["unreliable_read"] = held
    return out


def public_result(d: dict[str, Any]) -> dict[str, Any]:
    """A result's ``to_dict()`` whose Cobb / slip reads went through :func:`public_measurement`."""
    meas = d.get("measurements")
    if not (isinstance(meas, dict) and any(k in meas for k in _VALUE)):
        return d
    return {**d, "measurements": {k: public_measurement(k, v) if k in _VALUE and isinstance(v, dict) else v
                                  for k, v in meas.items()}}


def failed_measurement(kind: str, exc: BaseException) -> dict[str, Any]:
    """The measurement dict of a read that raised: no number, ``failed`` true and the reason, so every reader
    (:func:`cobb_read` / :func:`slip_read`) shows "cannot measure — measurement failed (...)" and never a finding."""
    if kind not in _VALUE:
        raise ValueError(f"failed_measurement: kind {kind!r}; use one of {sorted(_VALUE)}")
    reason = f"measurement failed ({type(exc).__name__}: {exc})"
    return {_VALUE[kind]: None, "failed": True, "reliable": False, "warnings": [reason], "note": reason,
            "error": type(exc).__name__}


def measured(kind: str, fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``fn(*args, **kwargs)``, or :func:`failed_measurement` when it raises.

    Why: a measurement runs on a predicted mask or corners, which can be degenerate in ways no check foresees
    (a zero-length endplate, a singular fit); one such film must cost its own number, not the whole result, the
    page or a batch of a thousand films. The traceback goes to the log (it may be a bug to fix)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded in the result as a failed measurement, and logged
        _log.warning("%s measurement failed: %s: %s", kind, type(exc).__name__, exc, exc_info=True)
        return failed_measurement(kind, exc)
