"""docs/vertebra_box_ceiling.py: where AP50 on a vertebra-box folder is lost -- checked on hand-made films whose
answers are known (boxes drawn to the annotators' height, half their height, or missing)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("vertebra_box_ceiling", REPO_ROOT / "docs" / "vertebra_box_ceiling.py")
ceiling_doc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ceiling_doc)


def _column(n: int = 6, height: float = 20.0) -> np.ndarray:
    """``n`` annotated boxes stacked down a column, each ``height`` high, touching."""
    return np.array([[40, 10 + i * height, 80, 10 + (i + 1) * height] for i in range(n)], float)


def _film(boxes: np.ndarray, truth: np.ndarray) -> dict:
    return {"boxes": boxes, "scores": list(np.linspace(0.9, 0.5, len(boxes))), "truth": truth}


def test_exact_boxes_score_one_and_nothing_is_left_to_win():
    t = _column()
    r = ceiling_doc.ceiling([_film(t.copy(), t)])
    assert r["ap50"] == 1.0 and r["ap50_matched_boxes_redrawn_as_annotated"] == 1.0
    assert r["annotated_found_at_iou"] == {"0.1": 1.0, "0.3": 1.0, "0.5": 1.0}


def test_boxes_drawn_too_short_are_found_but_miss_iou_half_and_a_film_factor_wins_them_back():
    t = _column()
    c = (t[:, 1] + t[:, 3]) / 2
    short = t.copy()
    short[:, 1], short[:, 3] = c - 4, c + 4  # 0.4 of the annotated height: IoU 0.4
    r = ceiling_doc.ceiling([_film(short, t)])
    assert r["ap50"] == 0.0 and r["annotated_found_at_iou"]["0.3"] == 1.0 and r["annotated_found_at_iou"]["0.5"] == 0.0
    assert r["ap50_per_film_height_factor"] == 1.0 and r["ap50_matched_boxes_redrawn_as_annotated"] == 1.0
    assert abs(r["log_height_ratio_sd_within_film_mean"]) < 1e-9  # one style throughout the film


def test_a_missed_vertebra_caps_even_the_redrawn_boxes():
    t = _column()
    r = ceiling_doc.ceiling([_film(t[:4].copy(), t)])  # the lowest two never found
    assert r["annotated_found_at_iou"]["0.1"] == round(4 / 6, 4)
    assert r["annotated_missed_at_iou_0.1"] == {"beyond_the_ends": 2, "between_found": 0}
    gap = ceiling_doc.ceiling([_film(np.delete(t, 2, axis=0), t)])  # the third one never found
    assert gap["annotated_missed_at_iou_0.1"] == {"beyond_the_ends": 0, "between_found": 1}
    assert r["ap50_matched_boxes_redrawn_as_annotated"] < 0.7
    assert r["consecutive_annotated_boxes_overlap_median"] == 0.0  # touching boxes
