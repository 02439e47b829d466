"""Metrics: the nine measures, bootstrap CIs (images and patients), AUC, calibration, McNemar, the shortcut audit."""
from __future__ import annotations

import math

import numpy as np
import pytest

from spine_models.metrics.audit import FEATURES, metadata_features, shortcut_audit
from spine_models.metrics.classification import (MEASURES, ClassificationAccumulator, auc_ovr, classification_metrics,
                                                 confusion, expected_calibration_error, per_class_measures,
                                                 reliability_curve, _auc_ovr_fast)
from spine_models.metrics.paired import mcnemar, mcnemar_table, mcnemar_test


# ------------------------------------------------------------------------------------------ measures
def test_nine_measures_binary_hand_computed():
    cm = np.array([[5, 2], [1, 12]])  # class a: TP 5, FN 2, FP 1, TN 12
    m = per_class_measures(cm, ["a", "b"])
    a = m["a"]
    expect = {"sensitivity": 5 / 7, "specificity": 12 / 13, "precision": 5 / 6, "npv": 12 / 14, "fpr": 1 / 13,
              "fdr": 1 / 6, "fnr": 2 / 7, "f1": 10 / 13, "accuracy": 17 / 20}
    assert set(a) == set(MEASURES) == set(expect)
    for k, v in expect.items():
        assert a[k] == pytest.approx(v), k
    # class b is the mirror image
    assert m["b"]["sensitivity"] == pytest.approx(12 / 13) and m["b"]["precision"] == pytest.approx(12 / 14)


def test_nine_measures_three_class_hand_computed():
    cm = np.array([[3, 1, 0], [2, 5, 1], [0, 0, 4]])  # class 1: TP 5, FN 3, FP 1, TN 7
    m = per_class_measures(cm)[1]
    assert m["sensitivity"] == pytest.approx(5 / 8)
    assert m["specificity"] == pytest.approx(7 / 8)
    assert m["precision"] == pytest.approx(5 / 6)
    assert m["npv"] == pytest.approx(7 / 10)
    assert m["f1"] == pytest.approx(10 / 14)
    assert m["accuracy"] == pytest.approx(12 / 16)


def test_confusion_rows_true_cols_pred():
    cm = confusion([0, 0, 1, 2], [0, 1, 1, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="outside"):
        confusion([0, 3], [0, 0], 3)


def _toy(n=120, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    p = rng.dirichlet(np.ones(c), n)
    p[np.arange(n), y] += 0.6
    return y, p / p.sum(1, keepdims=True)


def _iter_m(d):
    for k, v in d.items():
        if isinstance(v, dict) and set(v) == {"value", "ci95"}:
            yield k, v
        elif isinstance(v, dict) and k not in ("roc",):
            yield from _iter_m(v)


def test_classification_metrics_shape_and_cis_contain_point():
    y, p = _toy()
    classes = ["normal", "scoliosis", "spondylolisthesis"]
    m = classification_metrics(y, p, classes, n_resamples=300)
    assert np.array(m["confusion_matrix"]).sum() == len(y)
    assert set(m["per_class"]) == set(classes)
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    pred = p.argmax(1)
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"]["value"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["auc_macro"]["value"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"))
    count = 0
    for name, v in _iter_m(m):
        lo, hi = v["ci95"]
        assert lo <= v["value"] <= hi, name
        assert hi - lo < 0.6, name
        count += 1
    assert count >= 3 + 1 + 27 + 1  # acc, bacc, f1, auc, 27 per-class, ece
    assert len(m["roc"]["scoliosis"]["fpr"]) == len(m["roc"]["scoliosis"]["tpr"]) >= 2
    assert m["bootstrap"]["unit"] == "image"


def test_fast_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    y, p = _toy(80, 3, seed=3)
    p = np.round(p, 1)  # many ties
    fast = _auc_ovr_fast(y, p)
    for k in range(3):
        assert fast[k] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    assert auc_ovr(y, p) == pytest.approx(fast.mean())


def test_macro_roc_is_the_reports_curves_averaged():
    """The app's one-line-per-model ROC (Compare models) comes from metrics: its AUC is the report's macro
    AUC, its curve the mean of the report's per-class curves; a two-class task is its one curve."""
    from spine_models.metrics.classification import macro_roc, roc_points

    y, p = _toy(120, 3, seed=5)
    grid, tpr, auc = macro_roc(y, p, ["a", "b", "c"])
    assert auc == pytest.approx(auc_ovr(y, p)) and grid[0] == 0 and grid[-1] == 1 and tpr[-1] == pytest.approx(1)
    curves = roc_points(y, p, ["a", "b", "c"])
    mean = np.mean([np.interp(grid, c["fpr"], c["tpr"]) for c in curves.values()], axis=0)
    assert np.allclose(tpr, mean, atol=1e-4)
    yb, pb = _toy(80, 2, seed=6)
    assert macro_roc(yb, pb, ["a", "b"])[2] == pytest.approx(auc_ovr(yb, pb))
    assert macro_roc(np.zeros(5, int), np.full((5, 2), 0.5), ["a", "b"]) is None  # one class only: no curve


def test_absent_class_gives_null_not_crash():
    y, p = _toy(60, 3, seed=1)
    y[y == 2] = 0
    m = classification_metrics(y, p, ["a", "b", "c"], n_resamples=100)
    assert m["auc_macro"] is None
    assert m["per_class"]["c"]["sensitivity"] == {"value": None, "ci95": [None, None]}
    assert m["per_class"]["c"]["specificity"]["value"] is not None
    import json

    json.dumps(m, allow_nan=False)  # strict JSON
    empty = classification_metrics([], np.zeros((0, 2)), ["a", "b"], n_resamples=10)
    assert empty["accuracy"]["value"] is None and empty["n"] == 0


def test_binary_threshold_changes_predictions():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.2, 0.4, 0.35, 0.9])
    p = np.stack([1 - p1, p1], 1)
    assert classification_metrics(y, p, ["n", "s"], n_resamples=10)["confusion_matrix"] == [[2, 0], [1, 1]]
    assert classification_metrics(y, p, ["n", "s"], threshold=0.3, n_resamples=10)["confusion_matrix"] == [[1, 1], [0, 2]]


def test_bootstrap_over_patients_equals_image_bootstrap_of_unique_patients():
    """Five identical images per patient: resampling patients must behave like resampling one image each."""
    y, p = _toy(40, 2, seed=2)
    k = 5
    yd, pd_, g = np.repeat(y, k), np.repeat(p, k, axis=0), np.repeat(np.arange(40), k)
    by_patient = classification_metrics(yd, pd_, ["a", "b"], groups=g, n_resamples=200, seed=7)
    unique = classification_metrics(y, p, ["a", "b"], n_resamples=200, seed=7)
    naive = classification_metrics(yd, pd_, ["a", "b"], n_resamples=200, seed=7)
    assert by_patient["bootstrap"]["unit"] == "patient"
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert by_patient[key]["ci95"] == pytest.approx(unique[key]["ci95"])
    assert by_patient["per_class"]["a"]["npv"]["ci95"] == pytest.approx(unique["per_class"]["a"]["npv"]["ci95"])
    # treating duplicates as independent images gives an overconfident (narrower) interval
    w = lambda m: m["accuracy"]["ci95"][1] - m["accuracy"]["ci95"][0]  # noqa: E731
    assert w(naive) < 0.7 * w(by_patient)


def test_accumulator_equals_one_shot():
    y, p = _toy(50, 3, seed=4)
    acc = ClassificationAccumulator(["a", "b", "c"])
    for i in range(0, 50, 16):
        acc.update(y[i:i + 16], p[i:i + 16])
    assert len(acc) == 50
    assert acc.compute(n_resamples=50) == classification_metrics(y, p, ["a", "b", "c"], n_resamples=50)
    with pytest.raises(ValueError, match="columns"):
        acc.update([0], [[0.5, 0.5]])


# ---------------------------------------------------------------------------------------- calibration
def test_ece_perfectly_calibrated_vs_overconfident():
    # bin 0.7: 10 images at confidence 0.7, 7 right; bin 0.9: 10 at 0.9, 9 right -> ECE 0
    y = np.array([1] * 7 + [0] * 3 + [1] * 9 + [0] * 1)
    p1 = np.array([0.7] * 10 + [0.9] * 10)
    p = np.stack([1 - p1, p1], 1)
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    # overconfident: confidence 0.99, half right -> ECE 0.49
    y2 = np.array([1, 0] * 10)
    p2 = np.tile([[0.01, 0.99]], (20, 1))
    assert expected_calibration_error(y2, p2) == pytest.approx(0.49)
    bins = reliability_curve(y2, p2)
    full = [b for b in bins if b["count"]]
    assert len(full) == 1 and full[0]["accuracy"] == pytest.approx(0.5) and full[0]["confidence"] == pytest.approx(0.99)
    m = classification_metrics(y2, p2, ["a", "b"], n_resamples=100)
    assert m["calibration"]["ece"]["value"] == pytest.approx(0.49)
    assert sum(b["count"] for b in m["calibration"]["bins"]) == 20


# -------------------------------------------------------------------------------------------- McNemar
def test_mcnemar_known_table_continuity_and_exact():
    # textbook 2x2 (Wikipedia "McNemar's test" example): a=59, b=6, c=16, d=80
    table = [[59, 6], [16, 80]]
    chi = mcnemar(table, exact=False)
    assert (chi["b"], chi["c"], chi["n"]) == (6, 16, 161)
    assert chi["statistic"] == pytest.approx((abs(6 - 16) - 1) ** 2 / 22)  # 3.6818
    assert chi["p_value"] == pytest.approx(0.05501, abs=2e-5)
    exact = mcnemar(table)  # b + c = 22 < 25 -> exact binomial by default
    assert exact["method"] == "exact binomial"
    hand = 2 * sum(math.comb(22, k) for k in range(0, 7)) / 2 ** 22  # 0.052479
    assert exact["p_value"] == pytest.approx(hand)
    # Agresti's presidential approval table: b=150, c=86 -> corrected chi2 = 63^2/236
    big = mcnemar([[794, 150], [86, 570]])
    assert big["method"].startswith("chi-square")
    assert big["statistic"] == pytest.approx(63 ** 2 / 236)
    assert big["p_value"] < 1e-4
    assert mcnemar([[5, 0], [0, 5]])["p_value"] == 1.0


def test_mcnemar_from_predictions():
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    a = np.array([0, 1, 0, 1, 1, 0, 1, 0])  # all right
    b = np.array([1, 1, 1, 1, 0, 0, 1, 0])  # 3 wrong
    assert mcnemar_table(a == y, b == y).tolist() == [[5, 3], [0, 0]]
    r = mcnemar_test(y, a, b)
    assert r["b"] == 3 and r["c"] == 0 and r["accuracy_a"] == 1.0 and r["p_value"] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        mcnemar_test(y, a, b[:-1])


# ---------------------------------------------------------------------------------------------- audit
def _noise(rng, h, w):
    return (rng.random((h, w)) * 0.5 + 0.2).astype(np.float32)


def test_metadata_features_values():
    img = np.zeros((100, 50), np.uint16)
    img[40:60, 20:30] = 65535
    f = metadata_features(img)
    assert set(f) == set(FEATURES)
    assert (f["width"], f["height"], f["bits"]) == (50, 100, 16)
    assert f["aspect_ratio"] == pytest.approx(2.0)
    assert f["frac_saturated"] == pytest.approx(200 / 5000)
    assert f["frac_zero"] == pytest.approx(4800 / 5000)
    assert f["border_mean"] == 0 and f["border_minus_center"] < 0


def _planted_framing_films(folder, n: int) -> list:
    """``n`` films per class with the same intensities: class A 2:1 tall, class B square (a framing shortcut)."""
    import cv2

    from spine_models.data.records import Sample

    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        for cls, (h, w) in (("A", (128, 64)), ("B", (64, 64))):
            path = folder / f"{cls}{i}.png"
            cv2.imwrite(str(path), (_noise(rng, h, w) * 65535).astype(np.uint16))
            samples.append(Sample(id=f"{cls}{i}", patient_id=f"p{cls}{i}", path=path, label=cls))
    return samples


def test_audit_flags_planted_framing_shortcut(tmp_path):
    """Class A films are 2:1 tall, class B square, same intensities: metadata alone separates them."""
    from spine_models.data.records import SpineDataset

    samples = _planted_framing_films(tmp_path, 30)
    r = shortcut_audit(SpineDataset("planted", samples, classes=["A", "B"]), n_resamples=300)
    ba = r["metadata_baseline"]["balanced_accuracy"]
    assert r["shortcut_warning"] is True
    assert ba["ci95"][0] > r["majority_rate"] == 0.5
    assert {t["feature"] for t in r["top_features"][:3]} & {"height", "aspect_ratio"}
    assert "grouped" in r["cv"] or "group" in r["cv"]


def test_audit_no_warning_on_identical_framing():
    rng = np.random.default_rng(1)
    feats = [metadata_features(_noise(rng, 64, 64)) for _ in range(60)]
    labels = ["A", "B"] * 30
    r = shortcut_audit(feats, labels, groups=[f"p{i}" for i in range(60)], n_resamples=300)
    assert r["shortcut_warning"] is False
    assert r["metadata_baseline"]["balanced_accuracy"]["ci95"][0] < 0.5
    assert r["metadata_baseline"]["features"] == list(FEATURES)


def test_audit_degenerate_single_class():
    rng = np.random.default_rng(2)
    feats = [metadata_features(_noise(rng, 40, 40)) for _ in range(4)]
    r = shortcut_audit(feats, ["A"] * 4)
    assert r["shortcut_warning"] is False and "skipped" in r["note"]


@pytest.mark.shared
def test_audit_flags_real_ap_framing(fraiwan_dir):
    """The real AP set's two classes were framed differently: the audit must say so."""
    from spine_models.data.adapters import load_dataset

    ds = load_dataset(fraiwan_dir, task="classify")
    r = shortcut_audit(ds, n_resamples=300)
    assert r["shortcut_warning"] is True
    assert r["metadata_baseline"]["balanced_accuracy"]["ci95"][0] > r["majority_rate"]


def test_metadata_baseline_predict_answers_each_test_film_from_other_films(tmp_path):
    """Fitted on one set of planted-framing films, the baseline answers unseen films by their framing."""
    from spine_models.metrics.audit import metadata_baseline_predict

    samples = _planted_framing_films(tmp_path, 16)
    train, test = samples[:24], samples[24:]
    assert metadata_baseline_predict(train, test) == [s.label for s in test]
    with pytest.raises(ValueError, match="fewer than two classes"):
        metadata_baseline_predict([s for s in train if s.label == "A"], test)
