"""Vertebra targets from corners and boxes, the ignore-aware loss and the hash split (issue 14)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spine_models.data.records import BoxLabel, Sample, SpineDataset
from spine_models.data.splits import hash_part, patient_key, split_dataset
from spine_models.data.vertebra_targets import IGNORE, box_weak_mask, encode_ignore, quad_mask
from spine_models.models.segmentation import DiceBCELoss


def test_quad_mask_fills_the_corners_and_scales():
    lm = {"T1": [(10, 10), (30, 10), (30, 20), (10, 20)]}
    m = quad_mask((40, 40), lm)
    assert m[15, 20] == 1 and m[5, 20] == 0 and m[15, 35] == 0
    half = quad_mask((20, 20), lm, scale=(0.5, 0.5))
    assert half[7, 10] == 1 and half[2, 10] == 0


def test_box_weak_mask_core_is_vertebra_rim_is_unknown_outside_is_background():
    t, w = box_weak_mask((40, 40), [(10, 10, 30, 30)])
    assert t[20, 20] == 1 and w[20, 20] == 1          # core
    assert t[11, 11] == 0 and w[11, 11] == 0          # rim: no truth
    assert t[35, 35] == 0 and w[35, 35] == 1          # outside: background
    y = encode_ignore(t, w)
    assert y[11, 11] == IGNORE and y[20, 20] == 1 and y[35, 35] == 0


def test_loss_ignores_pixels_without_truth():
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 8, 8)
    target = (torch.rand(1, 1, 8, 8) > 0.5).float()
    loss = DiceBCELoss()
    base = loss(logits, target)
    # changing the logits where the target says IGNORE must not change the loss
    masked = target.clone()
    masked[..., :4, :] = IGNORE
    a = loss(logits, masked)
    logits2 = logits.clone()
    logits2[..., :4, :] += 5.0
    assert torch.isclose(a, loss(logits2, masked))
    assert not torch.isclose(base, loss(logits2, target))
    # a channel with no truth at all gives a finite loss
    assert torch.isfinite(loss(logits, torch.full_like(target, IGNORE)))


def _ds(ids):
    return SpineDataset(name="d", samples=[Sample(id=i, patient_id=i) for i in ids])


def test_hash_split_does_not_depend_on_the_other_patients():
    small = split_dataset(_ds([f"p{i}" for i in range(30)]), "7:1:2", seed=3, method="hash")
    big = split_dataset(_ds([f"p{i}" for i in range(30)] + [f"q{i}" for i in range(300)]), "7:1:2", seed=3, method="hash")
    for part in ("train", "val", "test"):
        assert {s.id for s in small[part].samples} == {s.id for s in big[part].samples if s.id.startswith("p")}
    assert big["test"].meta["split"]["method"] == "hash"
    n_test = len(big["test"].samples)
    assert 0.1 < n_test / 330 < 0.3


def test_one_subject_spelled_two_ways_lands_in_one_part():
    assert patient_key("N1,N,F,21") == patient_key("N1-N-F-21")
    r = (0.7, 0.1, 0.2)
    assert all(hash_part(f"N{i},N,F,21", r, 0) == hash_part(f"N{i}-N-F-21", r, 0) for i in range(50))


def test_unknown_split_method_is_refused():
    from spine_models.errors import ConfigError

    with pytest.raises(ConfigError, match="hash"):
        split_dataset(_ds(["a", "b"]), method="random")


def test_segment_targets_from_corners_and_boxes_train_one_step(tmp_path):
    import cv2

    from spine_models.engine.segment import structure_targets, train_parts

    samples = []
    for i in range(4):
        img = np.full((128, 64), 40, np.uint8)
        lm, boxes = {}, []
        for k in range(5):
            y0 = 10 + 22 * k
            cv2.rectangle(img, (20, y0), (44, y0 + 14), 200, -1)
            if i % 2 == 0:
                lm[f"L{k + 1}"] = [(20, y0), (44, y0), (44, y0 + 14), (20, y0 + 14)]
            else:
                boxes.append(BoxLabel(18, y0 - 2, 46, y0 + 16, "vertebra"))
        p = tmp_path / f"f{i}.png"
        cv2.imwrite(str(p), img)
        samples.append(Sample(id=f"f{i}", patient_id=f"p{i}", path=p, view="ap", landmarks=lm, boxes=boxes))
    t, w = structure_targets(samples[0], ["vertebra", "pedicle"], (64, 32), (128, 64))
    assert t[0].max() == 1 and w[0].min() == 1 and w[1].max() == 0   # corners: exact; pedicle: no truth
    t, w = structure_targets(samples[1], ["vertebra"], (64, 32), (128, 64))
    assert t[0].max() == 1 and w[0].min() == 0                         # boxes: weak
    ds = SpineDataset(name="d", samples=samples)
    cfg = {"model": "unet_tiny", "imgsz": [64, 32], "epochs": 1, "batch": 2, "max_steps": 1, "view": "ap",
           "structures": ["vertebra"], "augment": "xray-real", "eval_resamples": 20, "seed": 0}
    card = train_parts({"train": ds, "val": ds, "test": SpineDataset(name="e", samples=[])}, cfg, tmp_path / "run",
                       quiet=True)
    assert card.is_file()


def test_body_height_scaling_keeps_endplate_directions_and_inverts():
    from spine_models.data.vertebra_targets import body_height_scaled
    from spine_models.measure.cobb import endplate_angles

    c = np.array([(10, 10), (40, 16), (37, 36), (7, 30)], float)  # tilted, wedged body
    short = body_height_scaled(c, 0.7)
    assert endplate_angles(short) == pytest.approx(endplate_angles(c))
    assert np.linalg.norm(short[3] - short[0]) == pytest.approx(0.7 * np.linalg.norm(c[3] - c[0]))
    assert body_height_scaled(short, 1 / 0.7) == pytest.approx(c)
    m_full = quad_mask((64, 64), {"L1": c})
    m_short = quad_mask((64, 64), {"L1": c}, body_height=0.7)
    assert 0.6 < m_short.sum() / m_full.sum() < 0.8


def test_body_height_goes_into_the_card_and_bad_values_are_refused(tmp_path):
    import json

    import cv2

    from spine_models.engine.segment import Predictor, train_parts
    from spine_models.errors import ConfigError

    img = np.full((128, 64), 40, np.uint8)
    lm = {}
    for k in range(5):
        y0 = 10 + 22 * k
        cv2.rectangle(img, (20, y0), (44, y0 + 14), 200, -1)
        lm[f"L{k + 1}"] = [(20, y0), (44, y0), (44, y0 + 14), (20, y0 + 14)]
    p = tmp_path / "f.png"
    cv2.imwrite(str(p), img)
    ds = SpineDataset(name="d", samples=[Sample(id="f", patient_id="p", path=p, view="ap", landmarks=lm)])
    cfg = {"model": "unet_tiny", "imgsz": [64, 32], "epochs": 1, "batch": 1, "max_steps": 1, "view": "ap",
           "structures": ["vertebra"], "eval_resamples": 20, "seed": 0, "body_height": 0.7}
    card = train_parts({"train": ds, "val": ds, "test": SpineDataset(name="e", samples=[])}, cfg, tmp_path / "run",
                       quiet=True)
    assert json.loads(card.read_text())["preprocessing"]["body_height"] == 0.7
    assert Predictor(card).body_height == 0.7
    with pytest.raises(ConfigError, match="body_height"):
        train_parts({"train": ds, "val": ds, "test": SpineDataset(name="e", samples=[])}, {**cfg, "body_height": 2},
                    tmp_path / "run2", quiet=True)
