"""Classifiers built from other models: a measurement read by a segmentation model, and view routing.

Why: the three-class X-ray question is two measured questions (the phantom's labels, and the clinical
definitions: scoliosis = Cobb >= 10 deg on the AP film, spondylolisthesis = Meyerding grade >= I on the
lateral film). A CNN that answers it from a whole film misses the borderline cases the shipped U-Nets
measure (docs/three_class_synth.md), and a film of unknown view must first be told AP or lateral.

- ``measure_cobb`` / ``measure_slip``: P(positive) = sigmoid(a * value + c), where ``value`` is the Cobb
  angle (AP U-Net) or the worst lumbar slip % (lateral U-Net), clipped to ``clip``. ``a`` and ``c`` are
  fitted by class-balanced logistic regression on the train + val parts' measurements (two numbers, no
  model selection); the decision is P >= 0.5, the value where both classes are equally likely.
- ``view_routed``: a view model (``label_from: view``, classes ap / lat) gates one expert per view; the
  output is the mixture P(c) = sum_v P(view = v) * P_v(c) (an expert gives 0 to classes it does not
  have; a binary expert's probabilities are first shifted so its own threshold sits at 0.5, see
  :func:`at_threshold`). A film whose own metadata says its view (DICOM ViewPosition) skips the view model.

A classifier that reads a measurement abstains when the measurement is not a finding (no spine found,
too few bodies, a read the engine flags unreliable: :func:`spine_models.measure.cobb_read`): ``predict``
returns ``abstained=True`` with "no answer: the measurement failed — <reason>" and no probabilities, and a
routed model whose deciding expert abstains does too. ``predict_proba`` (evaluation) still scores such a
film as the clip's low end, as ``segment.evaluate`` counts it, so every film of a report has a score.

Both are ``task: classify`` cards with a small weight file (the fitted numbers, the experts' ids and
sha256), trained with ``spine-models train --task classify --model <arch>`` and evaluated like any
classifier. Their predictors answer ``predict`` / ``predict_proba`` like ``classify.Predictor``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from spine_models.engine.base import TASK_OPTIONS, BasePredictor
from spine_models.engine.predictor import check_component
from spine_models.engine.trainer import BaseTrainer, FitResult, new_card, write_card
from spine_models.errors import ConfigError, DatasetError
from spine_models.models.cards import ModelCard

__all__ = ["MEASURES", "ROUTED", "ARCHS", "is_composite", "measured_value", "measurement_failure", "abstention_note",
           "at_threshold", "CompositePredictor", "CompositeTrainer"]

# arch -> what it reads: the segmentation view, the measurement key and value, the positive class, the
# default segmentation model and the value's clip range (a 90-deg misread must not outvote everything)
MEASURES: dict[str, dict[str, Any]] = {
    "measure_cobb": {"view": "ap", "key": "cobb", "value": "cobb_deg", "positive": "scoliosis",
                     "seg": "seg_unet_ap", "clip": (0.0, 40.0)},
    "measure_slip": {"view": "lat", "key": "slip", "value": "slip_percent", "positive": "spondylolisthesis",
                     "seg": "seg_unet_lat", "clip": (-10.0, 60.0)},
}
ROUTED = "view_routed"
ARCHS = (*MEASURES, ROUTED)


def is_composite(arch: str) -> bool:
    return arch in ARCHS


def measurement_failure(arch: str, measurements: dict[str, Any]) -> str | None:
    """Why a ``measure_*`` model has nothing to read on this film (None when the measurement is a finding)."""
    from spine_models.measure import cobb_read, slip_read

    spec = MEASURES[arch]
    r = (cobb_read if spec["key"] == "cobb" else slip_read)(measurements.get(spec["key"]))
    return None if r.ok else r.reason


def abstention_note(reason: str) -> str:
    return f"no answer: the measurement failed — {reason}"


def measured_value(arch: str, measurements: dict[str, Any]) -> float:
    """The clipped measurement a ``measure_*`` model reads; an unmeasurable film reads as the clip's low
    end (no finding), as ``segment.evaluate`` counts it."""
    spec = MEASURES[arch]
    v = (measurements.get(spec["key"]) or {}).get(spec["value"])
    lo, hi = spec["clip"]
    return float(np.clip(float(v), lo, hi)) if v is not None else float(lo)


def _source(item: Any) -> Any:
    """A Sample -> its image path; anything else (path, Radiograph, array) as it is."""
    return item.path if hasattr(item, "patient_id") and hasattr(item, "path") else item


def _load(model: str, device: Any) -> Any:
    """A component from the process-wide cache (``engine.predictor.shared_predictor``): the app's section of
    the same model and every other composite get this same object."""
    from spine_models.engine.predictor import shared_predictor

    return shared_predictor(str(model), device=None if device is None else str(device))


_check_sha = check_component  # engine.predictor: one sha256 check for every composite


def at_threshold(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """A binary expert's [P(neg), P(pos)] shifted in logit space so its own decision threshold becomes 0.5.

    Why: a routed answer is the argmax of the mixture; an expert whose threshold was chosen on its
    validation part (Youden; 0.17 for the lateral slip model) would otherwise be overruled between its
    threshold and 0.5 (the routed model made 7 lateral errors where the expert alone made 4)."""
    probs = np.asarray(probs, dtype=np.float64)
    if threshold is None or len(probs) != 2 or not 0 < float(threshold) < 1:
        return probs
    eps = 1e-7
    p = float(np.clip(probs[1], eps, 1 - eps))
    t = float(threshold)
    z = np.log(p / (1 - p)) - np.log(t / (1 - t))
    q = 1.0 / (1.0 + np.exp(-z))
    return np.array([1.0 - q, q])


class CompositePredictor(BasePredictor):
    """``predict(image, cam=...) -> ClassificationResult`` for ``measure_*`` and ``view_routed`` cards.

    Its stages only combine other models (read and preprocess hand the film on as it is; ``infer`` asks the
    components), so nothing is kept per film here: the components keep their own results."""

    task = "classify"
    OPTIONS = TASK_OPTIONS["classify"]
    memo = False

    def __init__(self, card: ModelCard, device: Any = None) -> None:
        from spine_models.models.cards import load_state

        if not is_composite(card.arch):
            raise ConfigError(f"model {card.id!r}: arch {card.arch!r} is not a composite ({', '.join(ARCHS)})")
        super().__init__(card, device)
        sd, kw = load_state(card)
        self.kw = kw
        self.threshold = card.thresholds.get("binary") if len(card.classes or []) == 2 else None
        self.two_view = False
        if card.arch in MEASURES:
            self.seg = _load(kw["seg"], device)
            _check_sha("seg", self.seg.card, kw.get("seg_sha256", ""))
            self.coef, self.intercept = float(sd["coef"].reshape(-1)[0]), float(sd["intercept"].reshape(-1)[0])
            self.device = self.seg.device
        else:
            self.view_model = _load(kw["view"], device)
            _check_sha("view", self.view_model.card, kw.get("view_sha256", ""))
            self.experts = {}
            for v in ("ap", "lat"):
                self.experts[v] = _load(kw["experts"][v], device)
                _check_sha(v, self.experts[v].card, kw.get("experts_sha256", {}).get(v, ""))
            self.device = self.view_model.device

    # ------------------------------------------------------------------ measure_*
    def _measure(self, image: Any) -> tuple[np.ndarray, dict[str, Any], Any]:
        from spine_models.measure import public_measurement

        seg = self.seg.predict(_source(image))
        value = measured_value(self.card.arch, seg.measurements)
        p = 1.0 / (1.0 + np.exp(-(self.coef * value + self.intercept)))
        spec = MEASURES[self.card.arch]
        failed = measurement_failure(self.card.arch, seg.measurements)
        details = {"measured_by": self.seg.card.id,
                   "measurement": public_measurement(spec["key"], seg.measurements.get(spec["key"]))}
        if failed is None:
            details[spec["value"]] = value
        else:
            details["failed"] = failed
        return np.array([1.0 - p, p]), details, seg

    # ------------------------------------------------------------------ view_routed
    def _view_probs(self, image: Any) -> dict[str, float]:
        own = str(getattr(image, "view", "") or "").lower() if not hasattr(image, "patient_id") else ""
        if own in ("ap", "lat"):
            return {"ap": float(own == "ap"), "lat": float(own == "lat")}
        pv = self.view_model.predict_proba([_source(image)])[0]
        return {c: float(p) for c, p in zip(self.view_model.card.classes, pv)}

    def _route(self, image: Any, *, explain: bool, abstain: bool = False, **kw: Any) -> tuple[np.ndarray, dict[str, Any], Any]:
        """The mixture over views. With ``abstain`` (``predict``) a measuring expert that abstains is left out
        of it, and reported; without (``predict_proba``, evaluation) every expert scores, as before."""
        classes = list(self.card.classes or [])
        views = self._view_probs(image)
        out = np.zeros(len(classes))
        chosen = max(views, key=views.get)
        results = {}
        weight = 0.0
        dropped: dict[str, str] = {}
        for v, pv in views.items():
            expert = self.experts[v]
            if v == chosen or pv > 1e-3:  # a view the gate rules out costs nothing (the rest is renormalised)
                r = expert.predict(_source(image), cam=explain and v == chosen, **kw) if v == chosen else None
                if r is None and abstain and isinstance(expert, CompositePredictor):
                    r = expert.predict(_source(image), cam=False)  # a measuring expert may abstain
                if r is not None and getattr(r, "abstained", False):
                    if abstain:
                        dropped[v] = r.note  # the deciding expert abstaining makes the whole answer abstain
                        continue
                    r = None  # evaluation: the expert's own score of the film (predict_proba), as before
                weight += pv
                probs = np.asarray(r.probs) if r is not None else expert.predict_proba([_source(image)])[0]
                probs = at_threshold(probs, getattr(expert, "threshold", None))
                for c, p in zip(expert.card.classes, probs):
                    out[classes.index(c)] += pv * float(p)
                if r is not None and v == chosen:
                    results[v] = r
        out /= max(weight, 1e-12)
        details = {"view": {k: round(p, 6) for k, p in views.items()}, "expert": self.experts[chosen].card.id,
                   **dict(getattr(results.get(chosen), "extra", {}) or {})}
        if dropped:
            details["abstained_experts"] = {self.experts[v].card.id: note for v, note in dropped.items()}
        if chosen in dropped:
            details["failed"] = dropped[chosen]
        return out, details, results.get(chosen)

    # ------------------------------------------------------------------ common API
    def predict_proba(self, images: Sequence[Any]) -> np.ndarray:
        rows = []
        for im in images:
            rows.append(self._measure(im)[0] if self.card.arch in MEASURES else self._route(im, explain=False)[0])
        return np.stack(rows) if rows else np.zeros((0, len(self.card.classes or [])))

    def read(self, image: Any, **_: Any) -> Any:
        """The input as given: each component reads it itself (and keeps its own result per film)."""
        return image

    def preprocess(self, film: Any, **_: Any) -> Any:
        return film

    def infer(self, x: Any, *, cam: bool = True, shap: bool = False, shap_evals: int = 300,
              shap_progress: Callable[[int, int], None] | None = None, **_: Any) -> tuple[np.ndarray, dict[str, Any], Any]:
        """(probabilities, details, the deciding component's result): the measurement, or the routed mixture."""
        if self.card.arch in MEASURES:
            return self._measure(x)
        kw = {"shap": shap, "shap_evals": shap_evals, "shap_progress": shap_progress}
        return self._route(x, explain=cam or shap, abstain=True, **kw)

    def postprocess(self, raw: tuple[np.ndarray, dict[str, Any], Any], film: Any, x: Any, *, cam: bool = True,
                    shap: bool = False, **_: Any) -> Any:
        """A ClassificationResult; its ``extra`` says what was measured or which view and expert decided.
        Grad-CAM / SHAP come from the deciding expert when it is a network (a measurement has none)."""
        from spine_models.io.pixels import as_pixels
        from spine_models.results import ClassificationResult

        probs, details, inner = raw
        if self.card.arch in MEASURES:
            cam_map = shap_map = None
        else:
            cam_map = getattr(inner, "cam", None) if cam else None
            shap_map = getattr(inner, "shap", None) if shap else None
        failed = details.get("failed")
        if failed is not None and self.card.arch in MEASURES:
            failed = abstention_note(failed)
        size = tuple(getattr(inner, "image_size", ()) or as_pixels(_source(film))[0].shape[:2])
        name = str(getattr(inner, "source", "") or "")
        return ClassificationResult(model_id=self.card.id, source=name, image_size=tuple(int(v) for v in size),
                                    device=str(self.device), classes=list(self.card.classes or []),
                                    probs=[] if failed else [float(p) for p in probs],
                                    threshold=self.threshold, cam=None if failed else cam_map,
                                    shap=None if failed else shap_map, extra=details,
                                    abstained=bool(failed), note=failed or "")


# ---------------------------------------------------------------------------------------------- train

def _fit_measure(cfg: dict, parts: dict[str, Any], classes: list[str], cb: Any, quiet: bool) -> tuple[dict, dict, dict]:
    """Measure the train + val films and fit a class-balanced logistic regression on them.

    Two parameters and no model selection, so the validation part joins the fit instead of choosing
    anything; the cut is P = 0.5 of the balanced fit (the measured value where both classes are
    equally likely), and the test part is left for the card's metrics."""
    from sklearn.linear_model import LogisticRegression

    from spine_models._progress import progress

    arch = cfg["model"]
    spec = MEASURES[arch]
    if classes != ["normal", spec["positive"]]:
        raise DatasetError(f"{arch} decides normal vs {spec['positive']}; the data's classes are {classes} "
                           f"(use {spec['view'].upper()} films of those two classes)")
    seg_id = cfg.get("seg") or spec["seg"]
    seg = _load(seg_id, cfg.get("device"))
    if seg.card.task != "segment":
        raise ConfigError(f"seg={seg_id!r} is a {seg.card.task} model; {arch} needs a segment model")
    samples = [*parts["train"].samples, *parts["val"].samples]
    values = np.asarray([measured_value(arch, seg.predict(s.path).measurements)
                         for s in progress(samples, total=len(samples), desc="measure", quiet=quiet)], dtype=np.float64)
    labels = np.array([s.label == spec["positive"] for s in samples])
    if len(np.unique(labels)) < 2:
        raise DatasetError(f"{arch}: the train and val parts hold one class only; add films of both classes")
    lr = LogisticRegression(class_weight="balanced").fit(values[:, None], labels)
    coef, intercept = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    thr = 0.5
    cut = -intercept / coef if coef else float("nan")
    cb.on_log(f"{arch}: P({spec['positive']}) = sigmoid({coef:.3f} * {spec['value']} + {intercept:.3f}) on "
              f"{len(samples)} films; P = 0.5 at {spec['value']} {cut:.2f}")
    import torch

    state = {"coef": torch.tensor([coef], dtype=torch.float64), "intercept": torch.tensor([intercept], dtype=torch.float64)}
    arch_kwargs = {"seg": str(seg_id), "seg_sha256": seg.card.sha256,
                   "value": spec["value"], "clip": list(spec["clip"])}
    notes = [f"P({spec['positive']}) = sigmoid({coef:.4f} * {spec['value']} + {intercept:.4f}), {spec['value']} from "
             f"{seg.card.id} clipped to {list(spec['clip'])}, fitted (class-balanced) on the train + val parts' "
             f"{len(samples)} films; decision at P >= 0.5, i.e. {spec['value']} >= {cut:.2f}"]
    return state, {"arch_kwargs": arch_kwargs, "thresholds": {"binary": thr}, "notes": notes,
                   "view": spec["view"], "input_size": seg.card.input_size}, {"seg": seg.card}


def _fit_routed(cfg: dict, classes: list[str]) -> tuple[dict, dict, dict]:
    experts = cfg.get("experts") or {}
    if not isinstance(experts, dict) or not {"view", "ap", "lat"} <= set(experts):
        raise ConfigError("view_routed needs --set 'experts={view: VIEW_MODEL, ap: AP_MODEL, lat: LAT_MODEL}' "
                          f"(shipped ids or run folders); got {experts!r}")
    view = _load(str(experts["view"]), cfg.get("device"))
    if list(view.card.classes or []) != ["ap", "lat"]:
        raise ConfigError(f"experts.view={experts['view']!r} has classes {view.card.classes}; it must be a view model "
                          "(classes ap, lat: train one with --set label_from=view)")
    got = {v: _load(str(experts[v]), cfg.get("device")) for v in ("ap", "lat")}
    for v, p in got.items():
        if p.card.task != "classify":
            raise ConfigError(f"experts.{v}={experts[v]!r} is a {p.card.task} model; experts are classifiers")
        missing = set(p.card.classes or []) - set(classes)
        if missing:
            raise DatasetError(f"experts.{v} ({p.card.id}) has classes {sorted(missing)} that the data does not hold ({classes})")
    # components are recorded as given (a shipped id, or a run folder for a researcher's own), pinned by sha256
    ident = {"view": str(experts["view"]), "view_sha256": view.card.sha256,
             "experts": {v: str(experts[v]) for v in got},
             "experts_sha256": {v: p.card.sha256 for v, p in got.items()}}
    notes = [f"no parameters of its own: view gate {view.card.id}, AP expert {got['ap'].card.id}, lateral expert "
             f"{got['lat'].card.id}; P(c) = sum over views of P(view) * P_expert(c)"]
    return {}, {"arch_kwargs": ident, "thresholds": {}, "notes": notes, "view": "any",
                "input_size": view.card.input_size}, {"view": view.card, **{v: p.card for v, p in got.items()}}


class CompositeTrainer(BaseTrainer):
    """``spine-models train --task classify --model measure_cobb|measure_slip|view_routed`` on the one Trainer
    contract: the same data loading and per-patient split as a network; no epochs, so :meth:`run` fits the
    composite (a logistic regression on a measurement, or nothing for the routed model) instead of ``fit``, and
    ``history.json`` is an empty list. :meth:`finish` writes the card without test metrics; ``classify.train``
    evaluates it like a network (so this module never imports classify)."""

    task = "classify"

    def get_dataset(self) -> None:
        from dataclasses import replace

        from spine_models._env import configure_offline
        from spine_models.data.adapters import load_dataset
        from spine_models.data.records import relabel
        from spine_models.data.splits import split_dataset

        configure_offline()
        cfg = self.cfg
        self.data = data = cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]]
        if not data:
            raise ConfigError("classify config: no data; pass --data DIR (repeatable)")
        ds = load_dataset(data, task="classify")
        labelled = relabel(ds.samples, str(cfg.get("label_from") or "class"))
        if not labelled:
            raise DatasetError(f"{', '.join(map(str, data))}: no labelled images")
        self.ds = ds = replace(ds, samples=labelled)
        self.classes = list(ds.classes) or sorted({s.label for s in labelled})
        self.parts = split_dataset(ds, cfg["split"], seed=self.seed, group_near_duplicates=bool(cfg["group_near_duplicates"]))

    def get_model(self) -> None:
        return None  # a composite's parameters are fitted in run; its components are shipped or run-folder models

    def run(self, model: Any) -> FitResult:
        from spine_models.engine.trainer import write_json

        self.callbacks.on_train_start(self.cfg_record())
        if self.cfg["model"] in MEASURES:
            state, self.fields, self.components = _fit_measure(self.cfg, self.parts, self.classes, self.callbacks, self.quiet)
        else:
            state, self.fields, self.components = _fit_routed(self.cfg, self.classes)
        write_json(self.out / "history.json", [])
        summary = {"best_epoch": 0, "stopped_by": "epochs", "epochs_run": 0}
        self.callbacks.on_train_end(summary)
        return FitResult([], 0, None, state, "epochs", 0)

    def make_card(self, result: FitResult) -> ModelCard:
        """The card (weights saved by ``new_card``), test metrics not yet in it."""
        from spine_models.data.splits import split_provenance

        cfg, fields = self.cfg, self.fields
        return new_card(
            self.out, task="classify", arch=cfg["model"], state_dict=result.best_state, arch_kwargs=fields["arch_kwargs"],
            half=False, id=cfg.get("name") or self.out.resolve().name, view=cfg.get("view") or fields["view"],
            trained_on=f"{self.ds.name} ({', '.join(map(str, self.data))})", input_size=fields["input_size"],
            train_command=cfg.get("train_command") or "", license=cfg["license"], classes=self.classes, metrics={},
            normalization={"kind": "components"},
            preprocessing={"components": {k: c.id for k, c in self.components.items()},
                           "label_from": cfg.get("label_from") or "class"},
            thresholds=fields["thresholds"], notes=fields["notes"],
            data={"split": split_provenance(self.parts), "evaluated_on": "test"})

    def finish(self, model: Any, result: FitResult) -> Path:
        return write_card(self.make_card(result), self.out)
