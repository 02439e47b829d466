"""The evaluation report (SPEC "Evaluation report"): build, validate, write, and the whole `evaluate` flow.

Why a validator: the report is a contract read by scripts, the app and the model cards; the CLI
refuses to write a report that does not match SPEC, so a bug shows as exit 1, not as a silently
malformed file. Extra keys are allowed (split provenance, calibration, per-image predictions for
``spine-models compare``, McNemar against another model).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from spine_models.measure.cobb import INTER_OBSERVER_DEG
from spine_models.errors import DatasetError, SpineInputError, WeightsNotAvailableError
from spine_models.models.hub import resolve_card

__all__ = [
    "corner_tuning_args",
    "scoliosis_call_evaluation",
    "reads_scoliosis",
    "SCOLIOSIS_CALL_CLASSES",
    "REPORT_VERSION",
    "ReportSchemaError",
    "build_report",
    "validate_report",
    "write_report",
    "read_report",
    "evaluate_command",
    "paired_table",
    "test_part",
    "split_part",
    "outside_test_parts",
]

REPORT_VERSION = 1
# segment report keys that are present only when the data carries their truth (SPEC: report keys)
SEGMENT_OPTIONAL_M = ("cobb_mae_deg", "slip_mae_percent", "cobb_smape_percent", "cobb_within_5deg",
                      "cobb_not_shown_fraction", "landmark_mre_px", "landmark_mre_rel",
                      "vertebrae_matched_fraction", "vertebra_level_accuracy", "vertebra_ap50")
CLASSIFY_MEASURES = ("sensitivity", "specificity", "precision", "npv", "fpr", "fdr", "fnr", "f1")


class ReportSchemaError(ValueError):
    """A report dict that does not follow SPEC; the message gives the JSON path of the first problem."""


# ---------------------------------------------------------------------------------------------- build
def build_report(task: str, model_id: str, weights_sha256: str, data_info: dict[str, Any], metrics: dict[str, Any],
                 audit: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """SPEC report dict; ``data_info`` needs path, n, n_patients, classes, split (extra keys kept).

    ``extra`` keyword arguments become extra top-level keys (e.g. ``predictions=[...]``, ``mcnemar={...}``).
    """
    data = dict(data_info)
    data.setdefault("split", "all")
    report = {
        "task": task,
        "model": str(model_id),
        "weights_sha256": str(weights_sha256 or ""),
        "data": data,
        "metrics": metrics,
        "audit": audit,
        "report_version": REPORT_VERSION,
    }
    report.update({k: v for k, v in extra.items() if v is not None})
    return _jsonable(report)


def _jsonable(x: Any) -> Any:
    """numpy scalars/arrays -> Python, NaN/inf -> None, Paths -> str (the report must be strict JSON)."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, Path):
        return str(x)
    return x


# ------------------------------------------------------------------------------------------- validate
def _fail(path: str, msg: str) -> None:
    raise ReportSchemaError(f"report{path}: {msg}")


def _num_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _check_m(v: Any, path: str, *, nullable: bool = False) -> None:
    if v is None and nullable:
        return
    if not isinstance(v, dict) or set(("value", "ci95")) - set(v):
        _fail(path, f'must be {{"value", "ci95"}}, got {str(v)[:80]}')
    if not _num_or_none(v["value"]):
        _fail(path + '["value"]', f"must be a finite number or null, got {v['value']!r}")
    ci = v["ci95"]
    if not isinstance(ci, list) or len(ci) != 2 or not all(_num_or_none(c) for c in ci):
        _fail(path + '["ci95"]', f"must be [low, high] numbers or nulls, got {ci!r}")
    val, lo, hi = v["value"], ci[0], ci[1]
    if lo is not None and hi is not None and lo > hi + 1e-12:
        _fail(path + '["ci95"]', f"low {lo} above high {hi}")
    if val is not None and lo is not None and hi is not None and not (lo - 1e-9 <= val <= hi + 1e-9):
        _fail(path, f"value {val} lies outside its ci95 [{lo}, {hi}]")


def _check_m_map(d: Any, path: str, keys: Sequence[str] | None = None) -> None:
    if not isinstance(d, dict):
        _fail(path, "must be an object")
    for k in keys or []:
        if k not in d:
            _fail(path, f"missing {k!r}")
    for k, v in d.items():
        _check_m(v, f'{path}["{k}"]')


def validate_report(d: Any) -> dict[str, Any]:
    """Check a report against SPEC (raises :class:`ReportSchemaError` naming the first bad path); returns it."""
    if not isinstance(d, dict):
        _fail("", "must be a JSON object")
    for key, typ in (("task", str), ("model", str), ("weights_sha256", str), ("data", dict), ("metrics", dict),
                     ("audit", dict)):
        if key not in d:
            _fail("", f"missing top-level key {key!r}")
        if not isinstance(d[key], typ):
            _fail(f'["{key}"]', f"must be {typ.__name__}")
    task = d["task"]
    if task not in ("classify", "detect", "segment"):
        _fail('["task"]', f"{task!r} is not classify, detect or segment")
    data = d["data"]
    for key, typ in (("path", str), ("n", int), ("n_patients", int), ("classes", list), ("split", str)):
        if key not in data:
            _fail('["data"]', f"missing {key!r}")
        if not isinstance(data[key], typ) or isinstance(data[key], bool):
            _fail(f'["data"]["{key}"]', f"must be {typ.__name__}")
    if data["n"] < 0 or data["n_patients"] < 0 or data["n_patients"] > data["n"]:
        _fail('["data"]', f"n={data['n']} and n_patients={data['n_patients']} are inconsistent")
    m = d["metrics"]
    if task == "classify":
        classes = data["classes"]
        cm = m.get("confusion_matrix")
        if not isinstance(cm, list) or len(cm) != len(classes) or any(
                not isinstance(r, list) or len(r) != len(classes) or any(
                    not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in r) for r in cm):
            _fail('["metrics"]["confusion_matrix"]', f"must be a {len(classes)}x{len(classes)} matrix of counts "
                  "(rows true, columns predicted, in data.classes order)")
        if sum(map(sum, cm)) != data["n"]:
            _fail('["metrics"]["confusion_matrix"]', f"counts sum to {sum(map(sum, cm))}, data.n is {data['n']}")
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            if key not in m:
                _fail('["metrics"]', f"missing {key!r}")
            _check_m(m[key], f'["metrics"]["{key}"]')
        if "auc_macro" not in m:
            _fail('["metrics"]', "missing 'auc_macro' (use null when undefined)")
        _check_m(m["auc_macro"], '["metrics"]["auc_macro"]', nullable=True)
        pc = m.get("per_class")
        if not isinstance(pc, dict) or set(pc) != set(classes):
            _fail('["metrics"]["per_class"]', f"must have exactly the classes {classes}")
        for c in classes:
            _check_m_map(pc[c], f'["metrics"]["per_class"]["{c}"]', CLASSIFY_MEASURES)
    elif task == "detect":
        for key in ("map50", "map50_95"):
            if key not in m:
                _fail('["metrics"]', f"missing {key!r}")
            _check_m(m[key], f'["metrics"]["{key}"]')
        pc = m.get("per_class")
        if not isinstance(pc, dict):
            _fail('["metrics"]["per_class"]', "must be an object {class: {ap50, sensitivity, specificity}}")
        for c, v in pc.items():
            _check_m_map(v, f'["metrics"]["per_class"]["{c}"]', ("ap50", "sensitivity", "specificity"))
    else:
        for key in ("dice", "iou"):
            if key not in m:
                _fail('["metrics"]', f"missing {key!r}")
            _check_m_map(m[key], f'["metrics"]["{key}"]')
        for key in SEGMENT_OPTIONAL_M:
            if key in m:
                _check_m(m[key], f'["metrics"]["{key}"]', nullable=True)
    a = d["audit"]
    mb = a.get("metadata_baseline")
    if not isinstance(mb, dict):
        _fail('["audit"]', "missing 'metadata_baseline'")
    _check_m(mb.get("balanced_accuracy"), '["audit"]["metadata_baseline"]["balanced_accuracy"]')
    if not isinstance(mb.get("features"), list) or not all(isinstance(f, str) for f in mb["features"]):
        _fail('["audit"]["metadata_baseline"]["features"]', "must be a list of feature names")
    if not isinstance(a.get("shortcut_warning"), bool):
        _fail('["audit"]["shortcut_warning"]', "must be true or false")
    try:
        json.dumps(d, allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail("", f"is not strict JSON: {exc}")
    return d


def write_report(path: str | Path, d: dict[str, Any]) -> Path:
    """Validate, then write pretty JSON (parent folders created)."""
    validate_report(d)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(d, indent=2, allow_nan=False) + "\n")
    return p


def read_report(path: str | Path) -> dict[str, Any]:
    """Load and validate a report written by :func:`write_report`; bad files raise SpineInputError."""
    p = Path(path)
    if not p.is_file():
        raise SpineInputError("report file not found; pass the --out file of `spine-models evaluate`", p)
    try:
        d = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpineInputError(f"not a JSON evaluation report ({exc.__class__.__name__}); "
                              "pass the --out file of `spine-models evaluate`", p) from None
    try:
        return validate_report(d)
    except ReportSchemaError as exc:
        raise SpineInputError(f"not a valid evaluation report: {exc}", p) from None


# ------------------------------------------------------------------------------------------- evaluate
def _split_params(card: Any) -> tuple[Any, int]:
    """(ratios, seed) the model was trained with, from the card's split provenance (shallowest keys win;
    defaults 8:1:1 and 0 when the card records none)."""
    from collections import deque

    ratios: Any = None
    seed: int | None = None
    queue = deque([card.data or {}])
    while queue:
        d = queue.popleft()
        if not isinstance(d, dict):
            continue
        if seed is None and isinstance(d.get("seed"), int):
            seed = d["seed"]
        for key in ("ratios", "preset"):
            if ratios is None and d.get(key) is not None:
                ratios = tuple(d[key]) if isinstance(d[key], list) else d[key]
        queue.extend(v for v in d.values() if isinstance(v, dict))
    return (ratios if ratios is not None else "8:1:1"), (seed if seed is not None else 0)


def test_part(card: Any, dataset: Any) -> Any:
    """The test part of the per-patient split recorded in the card, re-created on ``dataset``.

    An engine may own this (a public ``split_for_card(card, dataset) -> SpineDataset`` in its module);
    otherwise the split is re-made with the card's ratios, seed, stratify and near-duplicate grouping.
    Detection stratifies by the box classes an image holds (as engine/detect.py does when training).
    """
    from spine_models.engine import card_engine

    hook = getattr(card_engine(card), "split_for_card", None)
    if callable(hook):
        return hook(card, dataset)
    return split_part(card, dataset, "test")


def split_part(card: Any, dataset: Any, part: str = "test") -> Any:
    """One part ("train", "val" or "test") of the card's recorded per-patient split, re-made on ``dataset`` (no
    engine hook): the validation part is where a read-out may be tuned without touching the test films."""
    import dataclasses

    from spine_models.data.splits import split_dataset

    ratios, seed = _split_params(card)
    rec = (card.data or {}).get("split") if isinstance((card.data or {}).get("split"), dict) else {}
    kwargs = {"stratify": bool(rec.get("stratify", True)),
              "group_near_duplicates": bool(rec.get("group_near_duplicates", False)),
              "method": str(rec.get("method", "shuffle"))}
    if card.task != "detect":
        return split_dataset(dataset, ratios=ratios, seed=seed, **kwargs)[part]
    from spine_models.engine.detect import split_by_box_classes

    parts = split_by_box_classes(dataset, ratios, seed, card.classes or [], **kwargs)
    return dataclasses.replace(dataset, samples=parts[part])


def outside_test_parts(dataset: Any, *cards: Any) -> list[Any]:
    """The samples of ``dataset`` in none of ``cards``' test parts (each card's recorded split re-made on it): films a
    read-out may be tuned on while every later comparison on those cards' test films stays unseen."""
    held = {s.id for card in cards for s in test_part(card, dataset).samples}
    return [s for s in dataset.samples if s.id not in held]


def corner_tuning_args(ap: Any, key: str, *, cadma: bool = False) -> Any:
    """The arguments of a script that tunes a corner model's read-out on films outside the test parts (docs/tune_*.py):
    the model, the real folders it reads (aasce-ap, cadma-vertebra when ``cadma``, fraiwan-ap), the classifier whose
    fraiwan-ap test part stays out too (:func:`outside_test_parts`), the record's path and the card ``--write`` stores
    ``key`` in."""
    ap.add_argument("--model", required=True, help="the corner model (shipped id or card)")
    ap.add_argument("--aasce", required=True)
    if cadma:
        ap.add_argument("--cadma", required=True)
    ap.add_argument("--fraiwan", required=True)
    ap.add_argument("--classifier", required=True, help="its test part of fraiwan-ap stays out too")
    ap.add_argument("--out", required=True)
    ap.add_argument("--write", help=f"card file to store the chosen {key} in")
    return ap


def _class_index(card: Any, dataset: Any) -> list[str]:
    return list(card.classes or card.structures or dataset.classes or [])


SCOLIOSIS_CALL_CLASSES = ("normal", "scoliosis")


def reads_scoliosis(card: Any) -> bool:
    """An AP vertebra model (it measures the Cobb angle, so the page calls scoliosis from it)."""
    return card.task == "segment" and card.view != "lat" and "vertebra" in (card.structures or [])


def scoliosis_call_evaluation(card: Any, dataset: Any, *, quiet: bool = False, n_resamples: int = 1000
                              ) -> dict[str, Any]:
    """The page's scoliosis call (``report.findings.cobb_call``) of an AP vertebra model on films labelled
    normal / scoliosis: ``metrics.scoliosis_call`` (balanced accuracy, sensitivity, specificity with CIs over
    patients, confusion matrix) and ``cobb_not_shown_fraction``; a film the page gives no answer for counts as
    "normal", as a reader of the page would get no scoliosis call.

    Why: the call is the answer a clinician reads, and a folder of labelled films from another hospital is the one
    truth there is for it; this makes it measurable by the same ``spine-models evaluate`` as every other figure."""
    import numpy as np

    from spine_models._progress import progress
    from spine_models.engine.predictor import shared_predictor
    from spine_models.measure import cobb_read
    from spine_models.metrics.classification import classification_metrics
    from spine_models.metrics.bootstrap import bootstrap_ci
    from spine_models.report.findings import PRESENT, cobb_call

    pred = shared_predictor(card)
    classes = list(SCOLIOSIS_CALL_CLASSES)
    rows, calls, shown = [], [], []
    for s in progress(dataset.samples, total=len(dataset.samples), desc="scoliosis call", quiet=quiet):
        cobb = pred.predict(s.path).measurements.get("cobb")
        r = cobb_read(cobb)
        c = "scoliosis" if cobb_call(cobb) == PRESENT else "normal"
        calls.append(classes.index(c))
        shown.append(1.0 if r.ok else 0.0)
        rows.append({"id": s.id, "patient_id": s.patient_id, "truth": s.label, "pred": c, "correct": c == s.label,
                     "cobb_deg": r.value if r.ok else None,
                     "centreline_deg": (cobb or {}).get("centreline_deg") if r.ok else None,
                     **({} if r.ok else {"why": r.text})})
    groups = [s.patient_id for s in dataset.samples]
    m = classification_metrics([classes.index(s.label) for s in dataset.samples], np.eye(2)[calls], classes,
                               groups=groups, n_resamples=n_resamples)
    call = {"balanced_accuracy": m["balanced_accuracy"], "sensitivity": m["per_class"]["scoliosis"]["sensitivity"],
            "specificity": m["per_class"]["scoliosis"]["specificity"], "confusion_matrix": m["confusion_matrix"],
            "classes": classes, "rule": "Cobb angle shown and >= 10 deg (and the column's centreline >= 10 deg where "
                                        "the model reads it); no answer counts as normal"}
    not_shown = bootstrap_ci(lambda a: float(np.mean(a)), 1.0 - np.asarray(shown), groups=groups, n_resamples=n_resamples)
    return {"metrics": {"dice": {}, "iou": {}, "scoliosis_call": call, "cobb_not_shown_fraction": not_shown},
            "predictions": rows}


def evaluate_command(model: str | Path, data_paths: Sequence[str | Path] | str | Path, out: str | Path | None = None,
                     *, split: str = "all", n_resamples: int = 1000, compare_with: str | Path | None = None,
                     quiet: bool = False, audit: bool = True) -> dict[str, Any]:
    """Evaluate a model on data and write the SPEC report (returned as a dict).

    ``split="test"`` re-creates the card's recorded patient-level split and keeps only its test part.
    ``compare_with`` (another model id/path, same task) adds McNemar on the same images.
    """
    from spine_models.data.adapters import load_dataset
    from spine_models.engine import card_engine
    from spine_models.metrics.audit import shortcut_audit
    from spine_models.models.cards import sha256_file

    if split not in ("all", "test"):
        raise SpineInputError(f"--split {split!r} is not 'all' or 'test'")
    if n_resamples < 1:
        raise SpineInputError(f"--resamples {n_resamples} must be at least 1 (SPEC reports use >= 1000)")
    card = resolve_card(model)
    other = resolve_card(compare_with) if compare_with is not None else None
    if other is not None and other.task != card.task:  # before the long evaluation, not after it
        raise SpineInputError(f"--compare-with model {other.id!r} is a {other.task} model, {card.id!r} is {card.task}")
    paths = [data_paths] if isinstance(data_paths, (str, Path)) else list(data_paths)
    call = False
    try:
        dataset = load_dataset(paths, task=card.task)
    except DatasetError:
        # an AP vertebra model on films labelled normal / scoliosis (class folders): the page's scoliosis call
        if not reads_scoliosis(card):
            raise
        dataset = load_dataset(paths, task="classify")
        if not dataset.classes or not set(dataset.classes) <= set(SCOLIOSIS_CALL_CLASSES):
            raise
        call = True
    if card.task == "classify":
        from spine_models.engine.classify import dataset_for_card

        dataset = dataset_for_card(card, dataset)
    full_n = len(dataset)
    provenance: dict[str, Any] = {"split": split}
    if split == "test":
        ratios, seed = _split_params(card)
        dataset = test_part(card, dataset)
        provenance.update(split_ratios=ratios if isinstance(ratios, str) else list(ratios), split_seed=seed,
                          split_unit="patient", n_before_split=full_n)
    if len(dataset) == 0:
        raise DatasetError(f"no samples to evaluate (split {split!r}); check --data", ", ".join(map(str, paths)))
    engine = card_engine(card)
    if call:
        if other is not None:
            raise SpineInputError("--compare-with is not available for the scoliosis call of a vertebra model on "
                                  "class folders; evaluate each model and run `spine-models compare A.json B.json`")
        result = scoliosis_call_evaluation(card, dataset, quiet=quiet, n_resamples=n_resamples)
    else:
        result = engine.evaluate(card, dataset, quiet=quiet, n_resamples=n_resamples)
    metrics, predictions = result["metrics"], result.get("predictions", [])
    aud = shortcut_audit(dataset, n_resamples=n_resamples, quiet=quiet) if audit else \
        {"metadata_baseline": {"balanced_accuracy": {"value": None, "ci95": [None, None]}, "features": []},
         "shortcut_warning": False, "note": "audit skipped"}
    try:
        sha = card.sha256 or sha256_file(card.weights_path())
    except OSError:
        raise WeightsNotAvailableError(f"weight file of {card.id!r} is missing", card.weights_path()) from None
    classes = list(SCOLIOSIS_CALL_CLASSES) if call else _class_index(card, dataset)
    data_info = {
        "path": ", ".join(str(p) for p in paths),
        "n": len(dataset),
        "n_patients": len(dataset.patients),
        "classes": classes,
        **provenance,
        "n_per_class": dataset.counts(),
    }
    extra: dict[str, Any] = {"predictions": predictions, "card": {"id": card.id, "arch": card.arch, "view": card.view,
                                                                  "input_size": card.input_size,
                                                                  "thresholds": card.thresholds}}
    if card.task == "classify" and "calibration" in metrics:
        extra["calibration"] = metrics["calibration"]
    if other is not None:
        other_res = card_engine(other).evaluate(other, dataset, quiet=quiet, n_resamples=n_resamples)
        from spine_models.metrics.paired import mcnemar

        extra["mcnemar"] = {"other_model": other.id, **mcnemar(paired_table(predictions, other_res.get("predictions", [])))}
        extra["other_metrics"] = other_res["metrics"]
    report = build_report(card.task, card.id, sha, data_info, metrics, aud, **extra)
    validate_report(report)
    if out is not None:
        write_report(out, report)
    return report


# ---------------------------------------------------------------------------------------- predictions
def _correct(pred: dict[str, Any]) -> bool | None:
    """Whether one stored prediction was right: ``correct`` if present, else ``truth == pred``."""
    if "correct" in pred and pred["correct"] is not None:
        return bool(pred["correct"])
    if pred.get("cobb_true") is not None:  # segment on AP films: a shown angle within the +-5 deg band is right
        got = pred.get("cobb_pred")
        return bool(pred.get("cobb_shown", got is not None)) and got is not None and \
            abs(float(got) - float(pred["cobb_true"])) <= INTER_OBSERVER_DEG
    if isinstance(pred.get("findings"), dict) and isinstance(pred.get("truth"), dict):  # detection, image level
        return all(bool(pred["findings"].get(c)) == bool(v) for c, v in pred["truth"].items())
    for t_key, p_key in (("truth", "pred"), ("label", "prediction"), ("y_true", "y_pred"), ("truth", "prediction")):
        if t_key in pred and p_key in pred:
            return pred[t_key] == pred[p_key]
    return None


def paired_table(preds_a: Sequence[dict[str, Any]], preds_b: Sequence[dict[str, Any]]) -> list[list[int]]:
    """McNemar 2x2 table from two reports' per-image predictions, matched by ``id``.

    Raises SpineInputError when the two sets do not cover the same images.
    """
    from spine_models.metrics.paired import mcnemar_table

    def index(preds: Sequence[dict[str, Any]], name: str) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for p in preds:
            ok = _correct(p)
            if "id" not in p or ok is None:
                raise SpineInputError(f"report {name}: per-image predictions need 'id' and 'truth'/'pred' "
                                      "(re-run `spine-models evaluate` with this version)")
            out[str(p["id"])] = ok
        return out

    a, b = index(preds_a, "A"), index(preds_b, "B")
    if not a or not b:
        raise SpineInputError("a report holds no per-image predictions; re-run `spine-models evaluate`")
    common = sorted(set(a) & set(b))
    if set(a) != set(b):
        raise SpineInputError(f"the two reports cover different images ({len(a)} vs {len(b)}, {len(common)} shared); "
                              "McNemar needs the same images: evaluate both models on the same --data and --split")
    return mcnemar_table([a[i] for i in common], [b[i] for i in common]).tolist()
