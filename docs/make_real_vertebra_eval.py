"""Vertebra models on held-out real AP films: Cobb, corners, vertebra AP50, and scoliosis from the measured Cobb.

    .venv/bin/python docs/make_real_vertebra_eval.py --split-card weights/seg_unet_ap.json \
        --model weights/seg_unet_ap.json --model /work/runs/seg_unet_ap_phantom/card.json \
        --data ../shared/data/aasce-ap --data ../shared/data/cadma-vertebra --fraiwan ../shared/data/fraiwan-ap

Why: the headline of a real-film model is its figure on patients it never saw. Every model is scored on the
same films: the test part of ``--split-card``'s recorded patient split (``split_method: hash``, so one patient
lands in the same part in every source, and a Fraiwan subject that also sits in cadma-vertebra stays on one side).
Writes ``docs/real_vertebra_eval.md`` and ``docs/real_vertebra_eval.json``; every figure comes from
``spine_models.engine.segment.evaluate`` and ``spine_models.metrics``.

``--fraiwan``: the Fraiwan normal/scoliosis films of the same held-out patients, read as "scoliosis" by the page's
call (``report.findings.cobb_call``: the measured Cobb angle >= 10 deg, and the column's centreline >= 10 deg for a
model that reads it; a film the page gives no answer for counts as "normal"), beside the endplate angle >= 10 deg
alone, against the metadata-only baseline (size, aspect, intensity) on the same films.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

__all__ = ["main"]

KEYS = ("cobb_mae_deg", "cobb_smape_percent", "cobb_within_5deg", "cobb_not_shown_fraction", "landmark_mre_px",
        "landmark_mre_rel", "vertebrae_matched_fraction", "vertebra_level_accuracy", "vertebra_ap50")


def _fmt(m: Any, pct: bool = False) -> str:
    if not isinstance(m, dict) or m.get("value") is None:
        return "—"
    f = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: f"{v:.3g}")
    lo, hi = m.get("ci95") or [None, None]
    return f(m["value"]) + (f" [{f(lo)}, {f(hi)}]" if lo is not None and hi is not None else "")


def _cobb_scoliosis(card: Any, dataset: Any, n_resamples: int) -> dict[str, Any]:
    from spine_models.engine.predictor import shared_predictor
    from spine_models.measure import cobb_read
    from spine_models.metrics.audit import shortcut_audit
    from spine_models.metrics.classification import classification_metrics

    pred = shared_predictor(card)  # the card's own Predictor (a U-Net, or the U-Net + corner composite)
    y_true, y_pred, y_end, rows = [], [], [], []
    for s in dataset.samples:
        cobb = pred.predict(s.path).measurements.get("cobb")
        r = cobb_read(cobb)
        call, endplate = _cobb_call(cobb)
        y_true.append(s.label)
        y_pred.append(call)
        y_end.append(endplate)
        rows.append({"id": s.id, "patient": s.patient_id, "truth": s.label, "cobb_deg": r.value if r.ok else None,
                     "centreline_deg": (cobb or {}).get("centreline_deg") if r.ok else None, "call": call,
                     "endplate_call": endplate, **({} if r.ok else {"why": r.text})})
    classes = ["normal", "scoliosis"]
    import numpy as np

    m = classification_metrics([classes.index(t) for t in y_true], np.eye(2)[[classes.index(p) for p in y_pred]], classes,
                               groups=[s.patient_id for s in dataset.samples], n_resamples=n_resamples)
    me = classification_metrics([classes.index(t) for t in y_true], np.eye(2)[[classes.index(p) for p in y_end]], classes,
                                groups=[s.patient_id for s in dataset.samples], n_resamples=n_resamples)
    audit = shortcut_audit(dataset, n_resamples=n_resamples, quiet=True)
    return {"n": len(rows), "balanced_accuracy": m["balanced_accuracy"], "confusion_matrix": m["confusion_matrix"],
            "endplate_alone": {"balanced_accuracy": me["balanced_accuracy"], "confusion_matrix": me["confusion_matrix"]},
            "metadata_baseline": audit["metadata_baseline"]["balanced_accuracy"], "rows": rows}


def _cobb_call(cobb: dict[str, Any] | None) -> tuple[str, str]:
    """(the page's call, the endplate reading's call alone): "scoliosis" or "normal" for a film's ``cobb``.

    The page's call is ``report.findings.cobb_call`` (the endplate angle >= 10 deg, and the column's centreline
    >= 10 deg where the model reads one); an answer the page would not give counts as "normal"."""
    from spine_models.measure import cobb_read
    from spine_models.report.findings import PRESENT, cobb_call

    r = cobb_read(cobb)
    return ("scoliosis" if cobb_call(cobb) == PRESENT else "normal"), ("scoliosis" if r.ok and r.value >= 10 else "normal")


def _paired_scoliosis(classifier: Any, cards: list[Any], names: list[str], fraiwan: Any, training: list[Any],
                      n_resamples: int) -> dict[str, Any]:
    """Measured-Cobb calls, the shipped CNN and the metadata-only baseline on the CNN's own test films.

    Films with a near duplicate among the vertebra models' training films are dropped first (Fraiwan subjects
    also sit in cadma-vertebra under other ids). The metadata baseline is fitted on the CNN's other Fraiwan films
    (what a deployed shortcut would have learnt), so each of the three gives one answer per film and the pairs
    go to McNemar (``spine_models.metrics.paired``).
    """
    import dataclasses

    import numpy as np

    from spine_models.data.leakage import near_duplicates_between
    from spine_models.engine.predictor import shared_predictor
    from spine_models.metrics.audit import metadata_baseline_predict
    from spine_models.metrics.classification import classification_metrics
    from spine_models.metrics.paired import mcnemar_test
    from spine_models.report.evaluation import test_part

    test = test_part(classifier, fraiwan)
    train_ds = dataclasses.replace(fraiwan, samples=training)
    dup = {r["a"] for r in near_duplicates_between(test, train_ds)}
    keep = [s for s in test.samples if s.id not in dup]
    rest_ids = {s.id for s in test.samples}
    base_train = [s for s in fraiwan.samples if s.id not in rest_ids]
    classes = ["normal", "scoliosis"]
    truth = [s.label for s in keep]
    answers: dict[str, list[str]] = {}
    cls = shared_predictor(classifier)
    answers[f"CNN `{classifier.id}`"] = [(r.top_class if not r.abstained else "no answer")
                                         for r in (cls.predict(s.path, cam=False) for s in keep)]
    answers["metadata-only baseline"] = metadata_baseline_predict(base_train, keep)
    for c, n in zip(cards, names):
        p = shared_predictor(c)
        calls = [_cobb_call(p.predict(s.path).measurements.get("cobb")) for s in keep]
        answers[f"Cobb call of the page, `{n}`"] = [a for a, _ in calls]
        if any(a != b for a, b in calls):
            answers[f"endplate Cobb >= 10 deg alone, `{n}`"] = [b for _, b in calls]
    groups = [s.patient_id for s in keep]
    out: dict[str, Any] = {"classifier": classifier.id, "n_test": len(test), "dropped_near_duplicates": sorted(dup),
                           "n": len(keep), "metadata_baseline_trained_on": len(base_train), "methods": {}}
    for name, ans in answers.items():
        probs = np.array([[1.0, 0.0] if a == "normal" else [0.0, 1.0] if a == "scoliosis" else [0.5, 0.5]
                          for a in ans])
        m = classification_metrics([classes.index(t) for t in truth], probs, classes, groups=groups,
                                   n_resamples=n_resamples)
        out["methods"][name] = {"balanced_accuracy": m["balanced_accuracy"], "confusion_matrix": m["confusion_matrix"],
                                "answers": ans}
    names_all = list(answers)
    out["mcnemar"] = [{"model_a": a, "model_b": b, **mcnemar_test(truth, answers[a], answers[b])}
                      for i, a in enumerate(names_all) for b in names_all[i + 1:]]
    out["truth"] = truth
    out["ids"] = [s.id for s in keep]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split-card", required=True, help="card whose recorded split gives the held-out test films")
    ap.add_argument("--model", action="append", required=True, help="segment model card / run folder / shipped id")
    ap.add_argument("--data", action="append", required=True, help="real landmark or YOLO vertebra folders")
    ap.add_argument("--fraiwan", help="fraiwan-ap folder: scoliosis from the measured Cobb on held-out patients")
    ap.add_argument("--classifier", help="with --fraiwan: the shipped AP classifier card; Cobb calls, it and the "
                    "metadata baseline are compared on its test films (McNemar)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", default=str(REPO / "docs" / "real_vertebra_eval"))
    args = ap.parse_args(argv)

    from spine_models.data.adapters import load_dataset
    from spine_models.engine import card_engine
    from spine_models.models.hub import resolve_card
    from spine_models.report.evaluation import test_part

    split_card = resolve_card(args.split_card)
    cards = [resolve_card(m) for m in args.model]
    out: dict[str, Any] = {"split_card": split_card.id, "split": (split_card.data or {}).get("split"), "results": []}
    import dataclasses

    from spine_models.data.leakage import near_duplicates_between

    training: list[Any] = []  # every film of --data outside the held-out part: what the vertebra models saw
    tests = []
    for d in args.data:
        full = load_dataset(d, task="segment")
        test = test_part(split_card, full)
        held = {s.id for s in test.samples}
        training += [s for s in full.samples if s.id not in held]
        tests.append((d, test))

    def unseen(test: Any) -> tuple[Any, list[str]]:
        """The held-out films less those with a near duplicate among the training films (any source)."""
        dup = sorted({r["a"] for r in near_duplicates_between(test, dataclasses.replace(test, samples=training))})
        return dataclasses.replace(test, samples=[s for s in test.samples if s.id not in set(dup)]), dup

    out["dropped_near_duplicates"] = {}
    for d, test in tests:
        test, dup = unseen(test)
        out["dropped_near_duplicates"][Path(d).name] = dup
        print(Path(d).name, f"{len(test)} held-out films, {len(dup)} dropped as near duplicates of training films", flush=True)
        for c, m in zip(cards, args.model):
            r = card_engine(c).evaluate(c, test, quiet=True, n_resamples=args.resamples)
            out["results"].append({"data": Path(d).name, "model": m, "card_id": c.id,
                                   "validated_on": [v.get("data") for v in (c.validated_on or [])],
                                   "n": r["n"], "n_patients": r["n_patients"],
                                   "metrics": {k: r["metrics"][k] for k in KEYS if k in r["metrics"]}})
            print(Path(d).name, m, {k: _fmt(v) for k, v in out["results"][-1]["metrics"].items()}, flush=True)
    if args.fraiwan:
        test, dup = unseen(test_part(split_card, load_dataset(args.fraiwan, task="classify")))
        out["dropped_near_duplicates"][Path(args.fraiwan).name] = dup
        out["fraiwan"] = [{"model": c.id, **_cobb_scoliosis(c, test, args.resamples)} for c in cards]
        for f in out["fraiwan"]:  # a card's validated_on may copy the page's scoliosis call from here
            out["results"].append({"data": Path(args.fraiwan).name, "model": f["model"], "card_id": f["model"], "n": f["n"],
                                   "n_patients": len({r["patient"] for r in f["rows"]}),
                                   "metrics": {"scoliosis_call_balanced_accuracy": f["balanced_accuracy"]}})
        if args.classifier:
            out["paired"] = _paired_scoliosis(resolve_card(args.classifier), cards, [c.id for c in cards],
                                              load_dataset(args.fraiwan, task="classify"), training, args.resamples)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1))

    lines = ["# Vertebra models on held-out real AP films", "",
             f"Generated by `python docs/make_real_vertebra_eval.py` ({' '.join(sys.argv[1:])}).", "",
             f"Test films: the test part of `{split_card.id}`'s recorded split ({json.dumps(out['split'])}); "
             "the same films for every model, less any film with a near duplicate among the training films of any "
             "source (`spine_models.data.leakage.near_duplicates_between`; dropped: "
             + ", ".join(f"{k} {len(v)}" for k, v in out["dropped_near_duplicates"].items())
             + "); 95 % CIs are bootstrap over patients. Keys: README, 'Report keys for vertebra models on real films'.", ""]
    for d in args.data:
        name = Path(d).name
        rs = [r for r in out["results"] if r["data"] == name]
        if not rs:
            continue
        lines += [f"## {name} ({rs[0]['n']} films, {rs[0]['n_patients']} patients)", "",
                  "| key | " + " | ".join(f"`{r['card_id']}`" for r in rs) + " |",
                  "|---|" + "---|" * len(rs)]
        for k in KEYS:
            if any(k in r["metrics"] for r in rs):
                pct = k in ("cobb_within_5deg", "cobb_not_shown_fraction", "vertebrae_matched_fraction", "landmark_mre_rel",
                             "vertebra_level_accuracy")
                lines.append(f"| `{k}` | " + " | ".join(_fmt(r["metrics"].get(k), pct) for r in rs) + " |")
        lines.append("")
    if out.get("fraiwan"):
        f0 = out["fraiwan"][0]
        lines += [f"## Scoliosis from the measured Cobb angle (fraiwan-ap, {f0['n']} held-out films)", "",
                  "The page's call (`report.findings.cobb_call`): scoliosis when the model's Cobb angle is shown and "
                  ">= 10°, and, for a model that reads the column's centreline (card key `centreline_degree`), the "
                  "centreline bends >= 10° too; an answer the page would not give counts as normal. Beside it the "
                  "endplate angle >= 10° alone. Metadata-only baseline: SPEC's shortcut audit on the same films.", "",
                  "| model | balanced accuracy (page's call) | confusion [[TN, FP], [FN, TP]] | endplate >= 10° alone | "
                  "its confusion | metadata-only baseline |", "|---|---|---|---|---|---|"]
        for f in out["fraiwan"]:
            e = f.get("endplate_alone") or {}
            lines.append(f"| `{f['model']}` | {_fmt(f['balanced_accuracy'])} | {f['confusion_matrix']} | "
                         f"{_fmt(e.get('balanced_accuracy'))} | {e.get('confusion_matrix')} | {_fmt(f['metadata_baseline'])} |")
        lines.append("")
    if out.get("paired"):
        pr = out["paired"]
        lines += [f"## Scoliosis: measured Cobb vs the shipped CNN vs metadata (McNemar), {pr['n']} films", "",
                  f"The test films of `{pr['classifier']}` ({pr['n_test']} fraiwan-ap films, its own per-patient "
                  f"split), less {len(pr['dropped_near_duplicates'])} with a near duplicate among the vertebra "
                  "models' training films. The metadata-only baseline (the audit's random forest on size, aspect "
                  f"and intensity) is fitted on the other {pr['metadata_baseline_trained_on']} fraiwan-ap films. "
                  "A Cobb angle the page would not show counts as normal.", "",
                  "| method | balanced accuracy | confusion [[TN, FP], [FN, TP]] |", "|---|---|---|"]
        for name, m in pr["methods"].items():
            lines.append(f"| {name} | {_fmt(m['balanced_accuracy'])} | {m['confusion_matrix']} |")
        lines += ["", "| A | B | A right, B wrong | A wrong, B right | p (McNemar) |", "|---|---|---|---|---|"]
        for t in pr["mcnemar"]:
            lines.append(f"| {t['model_a']} | {t['model_b']} | {t['b']} | {t['c']} | {t['p_value']:.3g} ({t['method']}) |")
        lines.append("")
    Path(args.out + ".md").write_text("\n".join(lines))
    print("wrote", args.out + ".md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
