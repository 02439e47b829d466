"""Findings first: one line per clinical finding across every model that spoke about it.

Why: a film analysed by eight models is eight engineer-style sections; a clinician reads "scoliosis,
Cobb 24° (main thoracic T6–T11), two real-validated models agree" first. Each finding keeps every
model's own say (its value, its threshold, whether it abstained) and the model's provenance, so
agreement and disagreement are visible and a phantom-only model never speaks unlabelled. A failed
or unreliable measurement is a "cannot measure — why" vote, never a number (``measure.cobb_read``).
The app, the HTML report and the PDF all build their top panel from :func:`findings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

__all__ = ["Vote", "Finding", "findings", "is_borderline", "real_cobb_error", "cobb_call", "SCOLIOSIS_COBB_DEG", "BORDERLINE_MARGIN", "PRESENT", "ABSENT", "NO_ANSWER",
           "CLASS_WORDS"]

PRESENT, ABSENT, NO_ANSWER = "present", "absent", "no answer"
SCOLIOSIS_COBB_DEG = 10.0  # SRS definition: a coronal curve of 10 deg or more
BORDERLINE_MARGIN = 0.10  # a probability this close to its decision threshold is marked borderline
# detector and classifier class names as a clinician reads them
CLASS_WORDS = {"scoliosis": "scoliotic curve region", "lumbar_implant": "lumbar implant", "sco": "scoliotic curve region",
               "Lum": "lumbar implant"}
_FINDINGS = (("scoliosis", "Scoliosis"), ("spondylolisthesis", "Spondylolisthesis"), ("implant", "Spinal implant"))


@dataclass
class Vote:
    """One model's say on one finding."""

    model_id: str
    says: str  # PRESENT | ABSENT | NO_ANSWER
    detail: str  # "Cobb 24.1° (19.1–29.1°)", "scoliosis 87 % (threshold 62 %)", "cannot measure — ..."
    measured: bool = False  # a measurement (Cobb, slip) rather than a classifier's or detector's call
    real_validated: bool = False
    badge: str = ""  # the card's validation badge (real figures, or the phantom-only label)
    borderline: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "says": self.says, "detail": self.detail, "measured": self.measured,
                "real_validated": self.real_validated, "badge": self.badge, "borderline": self.borderline}


@dataclass
class Finding:
    """A finding's headline (from the most trustworthy vote) and every vote behind it."""

    key: str  # scoliosis | spondylolisthesis | implant
    name: str
    votes: list[Vote] = field(default_factory=list)

    @property
    def lead(self) -> Vote | None:
        """The vote the headline comes from: a real-validated measurement first, then a real-validated call, then a
        phantom-only measurement, then a phantom-only call; a vote that answered before one that could not."""
        if not self.votes:
            return None
        return min(self.votes, key=lambda v: (not v.real_validated, v.says == NO_ANSWER, not v.measured))

    @property
    def status(self) -> str:
        """The lead vote's answer (PRESENT, ABSENT or NO_ANSWER)."""
        lead = self.lead
        return lead.says if lead else NO_ANSWER

    @property
    def agreement(self) -> str:
        """"agree" (every model that answered says the same), "disagree", or "one model" / "no model answered"."""
        answered = {v.says for v in self.votes if v.says != NO_ANSWER}
        n = sum(v.says != NO_ANSWER for v in self.votes)
        if n == 0:
            return "no model answered"
        if n == 1:
            return "one model"
        return "agree" if len(answered) == 1 else "disagree"

    @property
    def headline(self) -> str:
        """"Scoliosis: present — Cobb 24.1° (...)" / "Scoliosis: cannot measure — no spine column found"."""
        lead = self.lead
        if lead is None:
            return f"{self.name}: no model ran"
        word = {PRESENT: "present", ABSENT: "not found", NO_ANSWER: "no answer"}[lead.says]
        if lead.says == NO_ANSWER and lead.measured:
            return f"{self.name}: {lead.detail}"
        return f"{self.name}: {word} — {lead.detail}"

    @property
    def lead_source(self) -> str:
        """Where the lead vote's model was validated, as the panel says it: real films, or the phantom-only label."""
        from spine_models.models.provenance import PHANTOM_ONLY_LABEL

        lead = self.lead
        return "validated on real films" if lead is not None and lead.real_validated else PHANTOM_ONLY_LABEL

    @property
    def phantom_only(self) -> bool:
        """True when no model validated on real films spoke: the answer holds on phantoms only."""
        return not any(v.real_validated for v in self.votes)

    def to_dict(self) -> dict[str, Any]:
        return {"finding": self.key, "name": self.name, "status": self.status, "headline": self.headline,
                "agreement": self.agreement, "phantom_only": self.phantom_only,
                "votes": [v.to_dict() for v in self.votes]}


def _pct(p: float) -> str:
    return f"{p * 100:.0f} %" if p >= 0.995 or p <= 0.005 else f"{p * 100:.1f} %"


def is_borderline(probs: Sequence[float], threshold: float | None) -> bool:
    """A call to mark as borderline: a binary model's positive probability within ``BORDERLINE_MARGIN`` of its
    threshold, or (no threshold) the two largest probabilities within twice that of each other."""
    p = [float(x) for x in probs]
    if threshold is not None and len(p) == 2:
        return abs(p[1] - float(threshold)) < BORDERLINE_MARGIN
    top = sorted(p, reverse=True)
    return len(top) > 1 and top[0] - top[1] < 2 * BORDERLINE_MARGIN


def _classifier_votes(d: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """{finding: (says, detail, borderline)} from a classifier's result dict."""
    classes = list(d.get("classes") or [])
    out: dict[str, tuple[str, str, bool]] = {}
    for key in ("scoliosis", "spondylolisthesis"):
        if key not in classes:
            continue
        if d.get("abstained"):
            out[key] = (NO_ANSWER, d.get("note") or NO_ANSWER, False)
            continue
        probs = d.get("probs") or {}
        p = float(probs.get(key, float("nan")))
        pred = d.get("prediction")
        thr = d.get("threshold")
        border = is_borderline([float(probs.get(c, 0.0)) for c in classes], thr)
        if thr is not None and len(classes) == 2:
            detail = f"P({key}) {_pct(p)}, decision threshold {_pct(float(thr))}"
        else:
            detail = f"predicts {pred} ({_pct(float(probs.get(pred, float('nan'))))}); P({key}) {_pct(p)}"
        out[key] = (PRESENT if pred == key else ABSENT, detail + (" · borderline" if border else ""), border)
    return out


def real_cobb_error(card: Any) -> float | None:
    """The Cobb MAE (deg) a card reports on held-out *real* films (its ``validated_on`` real entries), else None."""
    vals = [float(e["metrics"]["cobb_mae_deg"]["value"]) for e in (getattr(card, "validated_on", None) or [])
            if e.get("real") and isinstance((e.get("metrics") or {}).get("cobb_mae_deg"), dict)]
    return max(vals) if vals else None


def _levels_source(names: Any) -> str:
    """How far a curve's level names can be trusted, in the finding's words: a level reader's held-out accuracy
    (``measurements.cobb.level_names``), else the count from the lowest body."""
    if isinstance(names, dict) and names.get("by") == "level reader":
        acc = names.get("held_out_accuracy")
        return ("levels named by a learned reader" + (f", right for {acc:.0%} of bodies on held-out films" if
                                                      isinstance(acc, (int, float)) else "") + ": approximate")
    return "levels counted up from the lowest body found: approximate"


def _cobb_vote(cobb: dict[str, Any] | None, real_error: float | None = None) -> tuple[str, str, bool]:
    """(says, detail, borderline): a measured angle is borderline when the 10° cut-off lies within the ±5°
    inter-observer band — two expert readers could call the film either way — or within the model's own mean
    error on held-out real films (``real_error``) when that is larger: a 16° read from a model that misses by
    10° on average is no evidence of a curve. When the measurement carries the column's centreline reading
    (``centreline_deg``), an endplate angle of 10° or more on a centreline under 10° is called absent (borderline):
    on validation films of normal spines the endplate reading alone called 92 % of them scoliosis
    (``docs/scoliosis_call_tuning.json``)."""
    from spine_models.measure import cobb_read
    from spine_models.measure.cobb import INTER_OBSERVER_DEG

    r = cobb_read(cobb)
    if not r.ok:
        return NO_ANSWER, r.text, False
    curves = (cobb or {}).get("curves") or []
    major = max(curves, key=lambda c: c.get("angle_deg", 0), default=None)
    band = (cobb or {}).get("band") or [max(0.0, r.value - 5), min(90.0, r.value + 5)]
    detail = f"Cobb {r.value:.1f}° (manual reads ±5°: {band[0]:.0f}–{band[1]:.0f}°)"
    if major and r.value >= SCOLIOSIS_COBB_DEG:
        detail += (f", {major.get('name') or 'curve'} {major.get('upper_end')}–{major.get('lower_end')}, apex {major.get('apex')}"
                   f" ({_levels_source((cobb or {}).get('level_names'))})")
    line = (cobb or {}).get("centreline_deg")
    if r.value >= SCOLIOSIS_COBB_DEG and isinstance(line, (int, float)) and line < SCOLIOSIS_COBB_DEG:
        # the two most tilted bodies read a curve the column itself does not make (measure.centreline_cobb)
        return ABSENT, (f"Cobb {r.value:.1f}° between single endplates, but the column's centreline bends only "
                        f"{line:.1f}° (< {SCOLIOSIS_COBB_DEG:.0f}°): tilted single bodies, not a curve of the column"
                        " · borderline"), True
    if (cobb or {}).get("gaps_in_column"):  # the reading stands with gaps in the column (landmarks.cobb_measurement)
        detail += " · parts of the column were not found: a curve ending there reads low"
    margin = max(INTER_OBSERVER_DEG, real_error or 0.0)
    border = abs(r.value - SCOLIOSIS_COBB_DEG) < margin
    if border and margin > INTER_OBSERVER_DEG:
        detail += (f" · borderline: within this model's mean error on held-out real films ({margin:.1f}°) of the "
                   f"{SCOLIOSIS_COBB_DEG:.0f}° cut-off")
    elif border:
        detail += f" · borderline: the ±{INTER_OBSERVER_DEG:.0f}° band holds the {SCOLIOSIS_COBB_DEG:.0f}° cut-off"
    return (PRESENT if r.value >= SCOLIOSIS_COBB_DEG else ABSENT), detail, border


def cobb_call(cobb: dict[str, Any] | None, real_error: float | None = None) -> str:
    """The scoliosis answer (PRESENT, ABSENT or NO_ANSWER) a ``cobb`` measurement gives on the page, in reports and
    in the evaluation scripts alike."""
    return _cobb_vote(cobb, real_error)[0]


def _slip_vote(slip: dict[str, Any] | None) -> tuple[str, str]:
    from spine_models.measure import slip_read

    r = slip_read(slip)
    if not r.ok:
        return NO_ANSWER, r.text
    grade = (slip or {}).get("meyerding_grade")
    word = (slip or {}).get("meyerding", grade)
    present = isinstance(grade, (int, float)) and grade >= 1
    return (PRESENT if present else ABSENT), f"slip {r.text} at {(slip or {}).get('level')}, Meyerding {word}"


def _votes_of(d: dict[str, Any], real_error: float | None = None) -> dict[str, tuple[str, str, bool, bool]]:
    """{finding: (says, detail, measured, borderline)} from one result's dict."""
    kind = d.get("type")
    out: dict[str, tuple[str, str, bool, bool]] = {}
    if kind == "ClassificationResult":
        for k, (says, detail, border) in _classifier_votes(d).items():
            out[k] = (says, detail, False, border)
    elif kind == "DetectionResult":
        thr = float(d.get("threshold", 0.5))
        for cls, key in (("scoliosis", "scoliosis"), ("sco", "scoliosis"), ("lumbar_implant", "implant"), ("Lum", "implant")):
            if cls not in (d.get("classes") or []):
                continue
            scores = [float(b["score"]) for b in d.get("boxes") or [] if b.get("label") == cls]
            best = max(scores, default=0.0)
            word = CLASS_WORDS.get(cls, cls)
            if best >= thr:
                detail = f"{word} detected (score {best:.2f}, threshold {thr:.2f})"
            else:
                detail = f"no {word} at score ≥ {thr:.2f}" + (f" (best {best:.2f})" if scores else "")
            out[key] = (PRESENT if best >= thr else ABSENT, detail, False, abs(best - thr) < BORDERLINE_MARGIN and bool(scores))
    elif kind == "SegmentationResult":
        meas = d.get("measurements") or {}
        structures = d.get("structures") or []
        if "cobb" in meas or "pedicle" in structures:
            says, detail, border = _cobb_vote(meas.get("cobb"), real_error)
            if says == NO_ANSWER and meas.get("cobb") is None:
                detail = "cannot measure — no spine column found"
            out["scoliosis"] = (says, detail, True, border)
        if "slip" in meas or "disc_height" in structures:
            says, detail = _slip_vote(meas.get("slip"))
            out["spondylolisthesis"] = (says, detail, True, False)
    return out


def findings(results: Sequence[Any], cards: Iterable[Any] | None = None) -> list[Finding]:
    """Scoliosis, spondylolisthesis and implant findings (those some model spoke about), in that order.

    ``results``: typed results or their ``to_dict()``; ``cards``: the models' cards (for provenance; a
    result whose card is missing counts as phantom-only)."""
    from spine_models.models.cards import is_real_validated, validation_badge
    from spine_models.models.provenance import PHANTOM_ONLY_LABEL

    cmap = {getattr(c, "id", None): c for c in (cards or [])}
    out = {key: Finding(key, name) for key, name in _FINDINGS}
    for r in results:
        d = r if isinstance(r, dict) else r.to_dict()
        card = cmap.get(d.get("model_id"))
        real = bool(card is not None and is_real_validated(card))
        badge = validation_badge(card) if card is not None else PHANTOM_ONLY_LABEL
        for key, (says, detail, measured, border) in _votes_of(d, real_cobb_error(card)).items():
            out[key].votes.append(Vote(str(d.get("model_id")), says, detail, measured, real, badge, border))
    return [f for f in out.values() if f.votes]
