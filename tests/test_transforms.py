"""The single preprocessing path, augmentation presets, torch datasets."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spine_models.data.records import Sample
from spine_models.data.torch_datasets import ClassificationTorchDataset, SegmentationTorchDataset, TwoViewTorchDataset
from spine_models.data.transforms import PRESET_NAMES, augmentation_preset, resize_2d, to_model_input
from spine_models.errors import ConfigError


def _img(h=90, w=60, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w)) * 0.5 + 0.2).astype(np.float32)


def test_to_model_input_shapes_and_ranges():
    x = _img()
    y = to_model_input(x, 32)
    assert y.shape == (1, 32, 32) and y.dtype == np.float32
    assert y.min() == pytest.approx(0.0) and y.max() == pytest.approx(1.0)  # per-image min-max
    y3 = to_model_input(x, (40, 24), {"kind": "imagenet"}, in_chans=3)
    assert y3.shape == (3, 40, 24)
    assert y3[0].mean() != pytest.approx(y3[2].mean())  # channel-wise mean/std
    flat = to_model_input(np.full((40, 40), 0.3, np.float32), 16)
    assert np.all(flat == 0)
    with pytest.raises(ConfigError, match="normalization"):
        to_model_input(x, 16, {"kind": "zscore?"})


def test_letterbox_keeps_aspect_and_pads_black():
    x = np.ones((100, 50), np.float32)
    out, info = resize_2d(x, 64, "letterbox")
    assert out.shape == (64, 64) and info["pad_left"] == 16 and info["scale_y"] == pytest.approx(0.64)
    assert out[:, :16].max() == 0 and out[:, 16:48].min() == pytest.approx(1.0)
    y = to_model_input(x * 0.5 + 0.1, 64, resize_mode="letterbox")
    assert y[0, :, :16].max() == 0 and y[0, :, 16:48].min() == pytest.approx(1.0)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_move_image_and_mask_together(name):
    mask = np.zeros((96, 64), np.uint8)
    mask[20:60, 15:40] = 1
    img = mask.astype(np.float32) * 0.8 + 0.1
    aug = augmentation_preset(name, 64, targets="mask", seed=0)
    for _ in range(6):
        out = aug(image=img, mask=mask)
        im, m = out["image"], out["mask"]
        assert im.shape == m.shape and im.dtype == np.float32
        if name in ("none", "light", "xception"):  # intensity changes keep the object separable
            thr = (im.max() + im.min()) / 2
            assert ((im > thr) == (m > 0)).mean() > 0.95


def test_mri_preset_brightness_range():
    aug = augmentation_preset("mri", seed=1)
    img = np.full((32, 32), 1.0, np.float32)
    vals = [float(aug(image=img)["image"].mean()) for _ in range(30)]
    assert 0.1 - 1e-6 <= min(vals) and max(vals) <= 0.7 + 1e-6 and max(vals) - min(vals) > 0.1


def test_bbox_variant_and_unknown_preset():
    aug = augmentation_preset("xception", targets="bboxes", seed=0)
    out = aug(image=_img(), bboxes=[(10, 10, 30, 50)], labels=["lumbar_implant"])
    assert out["labels"] in ([], ["lumbar_implant"]) and len(out["bboxes"]) == len(out["labels"])
    with pytest.raises(ConfigError, match="xception"):
        augmentation_preset("fancy")


def _write(path: Path, arr: np.ndarray) -> Path:
    cv2.imwrite(str(path), arr)
    return path


def test_torch_datasets(tmp_path):
    a = _write(tmp_path / "a.png", (np.random.default_rng(0).random((120, 80)) * 65535).astype(np.uint16))
    b = _write(tmp_path / "b, c.png", (np.random.default_rng(1).random((90, 70)) * 255).astype(np.uint8))
    m = np.zeros((120, 80), np.uint8)
    m[10:50, 10:30] = 255
    mk = _write(tmp_path / "m.png", m)
    samples = [Sample(id="a", patient_id="1", path=a, label="scoliosis", masks={"vertebra": mk}),
               Sample(id="b", patient_id="2", path=b, label="normal")]
    ds = ClassificationTorchDataset(samples, ["normal", "scoliosis"], 32, cache=True,
                                    augment=augmentation_preset("xray-robust", 32, seed=0))
    x, y = ds[0]
    assert tuple(x.shape) == (1, 32, 32) and y == 1 and ds[1][1] == 0
    assert ds._mem[(0, "image")].dtype == np.float32 and max(ds._mem[(0, "image")].shape) <= 64  # prepared once
    tv = TwoViewTorchDataset([Sample(id="p", patient_id="p", label="normal", views={"ap": a, "lat": b})],
                             ["normal"], 24, in_chans=3, normalization={"kind": "imagenet"})
    (ap, lat), lab = tv[0]
    assert tuple(ap.shape) == tuple(lat.shape) == (3, 24, 24) and lab == 0
    seg = SegmentationTorchDataset(samples, ["vertebra", "pedicle"], 40, cache=True)
    img, masks = seg[0]
    assert tuple(img.shape) == (1, 40, 40) and tuple(masks.shape) == (2, 40, 40)
    assert masks.min() >= 0 and masks.max() <= 1 and masks[1].sum() == 0  # soft targets; pedicle truly absent
    assert masks[0].sum() == pytest.approx(40 * 20 / (120 * 80) * 1600, rel=0.15)
    assert tuple(seg[1][1].shape) == (2, 40, 40) and float(seg[1][1].min()) < 0  # no masks at all: ignored


def test_maps_to_film_resizes_each_map_into_its_box_with_zeros_around():
    """Each map lands, bilinear (or nearest), in the crop box of a film-sized array; outside the box stays 0."""
    from spine_models.data.transforms import Geometry

    g = Geometry((300, 200), (64, 64), (64, 64), region=(10, 250, 20, 180))
    x = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32) + 0.1
    for nearest, interp in ((False, cv2.INTER_LINEAR), (True, cv2.INTER_NEAREST)):
        out = g.maps_to_film(x, nearest=nearest)
        assert out.shape == (2, 300, 200) and out.dtype == np.float32
        for k in range(2):
            np.testing.assert_array_equal(out[k, 10:250, 20:180], cv2.resize(x[k], (160, 240), interpolation=interp))
        inside = np.zeros((300, 200), bool)
        inside[10:250, 20:180] = True
        assert not out[:, ~inside].any() and out[:, inside].min() > 0
    whole = Geometry((128, 64), (64, 32), (64, 32))
    single = whole.maps_to_film(x[0, :, :32])
    np.testing.assert_array_equal(single, cv2.resize(x[0, :, :32], (64, 128), interpolation=cv2.INTER_LINEAR))
