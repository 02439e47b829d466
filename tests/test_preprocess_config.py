"""The typed preprocessing config, the one preprocess path and its inverse mapping (data.transforms)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spine_models.data.records import Sample
from spine_models.data.torch_datasets import ClassificationTorchDataset, SegmentationTorchDataset
from spine_models.data.transforms import (PREPROCESS_VERSION, Normalization, PreprocessConfig, finish_input,
                                          prepare_pixels, preprocess)
from spine_models.errors import ConfigError
from spine_models.models.cards import ModelCard

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

# stretch, letterbox, the detectors' fit (with and without stride padding), the classifiers' two-step downscale
CONFIGS = {
    "stretch": PreprocessConfig((64, 32), normalization=Normalization("none")),
    "stretch-taller": PreprocessConfig((64, 32), normalization=Normalization("none"), interpolation="area-taller"),
    "letterbox": PreprocessConfig((48, 48), resize_mode="letterbox", normalization=Normalization("none")),
    "prescaled-letterbox": PreprocessConfig((80, 80), resize_mode="letterbox", normalization=Normalization("none"), prescale=2.0),
    "fit": PreprocessConfig((96, 96), 3, "fit", Normalization("none"), bits=8, pad_value=114.0),
    "fit-stride": PreprocessConfig((96, 96), 3, "fit", Normalization("none"), bits=8, stride=32, pad_value=114.0),
}


def _film(box=(60, 150, 40, 110), shape=(300, 170)) -> np.ndarray:
    """A black film with one white rectangle (y0, y1, x0, x1)."""
    f = np.zeros(shape, np.float32)
    y0, y1, x0, x1 = box
    f[y0:y1, x0:x1] = 1.0
    return f


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_geometry_matches_the_pixels_and_round_trips_boxes(name):
    cfg = CONFIGS[name]
    film = _film()
    x, geo = preprocess(film, cfg)
    assert tuple(x.shape[-2:]) == geo.input_hw
    ys, xs = np.nonzero(x[0, 0].numpy() > 0.5)
    seen = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
    mapped = geo.boxes_to_input([[40, 60, 110, 150]])[0]
    assert np.abs(seen - mapped).max() <= 1.5, (seen, mapped)  # the forward mapping is where the pixels went
    back = geo.boxes_to_film(mapped[None])[0]
    np.testing.assert_allclose(back, [40, 60, 110, 150], atol=1e-9)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_mask_and_heatmap_round_trip(name):
    cfg = CONFIGS[name]
    film = _film()
    x, geo = preprocess(film, cfg)
    inp = x[0, 0].numpy()
    assert _iou(geo.mask_to_film(inp), film > 0.5) > 0.9  # a mask over the input lands where it was
    half = inp[::2, ::2]  # a coarser map (a CAM) over the same input
    heat = geo.heatmap_to_film(half)
    assert heat.shape == film.shape
    assert _iou(heat > 0.5, film > 0.5) > 0.8
    stack = geo.maps_to_film(np.stack([inp, 1 - inp]))
    assert stack.shape == (2,) + film.shape


def test_crop_and_roi_regions_map_back_onto_the_film():
    film = _film()
    box = (40, 200, 20, 150)
    cfg = PreprocessConfig((32, 32), normalization=Normalization("none"), prescale=2.0)
    x, geo = preprocess(film, cfg, box)
    assert geo.region == box
    back = geo.mask_to_film(x[0, 0].numpy())
    assert back.shape == film.shape and not back[:40].any() and not back[:, :20].any()
    assert _iou(back, film > 0.5) > 0.85
    roi = replace(cfg, roi=True)
    _, g2 = preprocess(film, roi)
    assert g2.region is not None and g2.heatmap_to_film(np.ones((8, 8), np.float32)).sum() < film.size


def test_hflip_tta_adds_the_mirror():
    cfg = PreprocessConfig((32, 16), tta="hflip")
    x, _ = preprocess(_film(), cfg)
    assert x.shape[0] == 2 and np.array_equal(x[1].numpy(), x[0].numpy()[..., ::-1])


def test_datasets_use_the_same_path_as_inference(tmp_path):
    import cv2

    img = (np.random.default_rng(0).random((120, 80)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    s = Sample(id="a", patient_id="1", path=tmp_path / "a.png", label="normal")
    cfg = PreprocessConfig((32, 24), prescale=2.0)
    from spine_models.data.torch_datasets import load_pixels

    px = load_pixels(s)
    ds = ClassificationTorchDataset([s], ["normal"], cfg=cfg, cache=True)
    np.testing.assert_array_equal(ds[0][0].numpy(), preprocess(px, cfg)[0][0].numpy())
    np.testing.assert_array_equal(ds[0][0].numpy(), finish_input(prepare_pixels(px, cfg), cfg))
    seg = PreprocessConfig((32, 24), interpolation="area-taller")
    sds = SegmentationTorchDataset([Sample(id="a", patient_id="1", path=tmp_path / "a.png")], ["vertebra"], cfg=seg)
    np.testing.assert_allclose(sds[0][0].numpy(), preprocess(px, seg)[0][0].numpy(), atol=1e-6)


@pytest.mark.parametrize("path", sorted(WEIGHTS.glob("*.json")), ids=lambda p: p.stem)
def test_from_card_reads_every_shipped_card(path):
    card = ModelCard.from_json(path)
    cfg = PreprocessConfig.from_card(card)
    d = cfg.to_dict()
    assert d["version"] == PREPROCESS_VERSION and PreprocessConfig.from_dict(d) == cfg
    size = card.input_size if isinstance(card.input_size, list) else None
    if card.task != "detect" and size and (card.preprocessing or {}).get("crop_size") is None:
        assert list(cfg.size) == [int(v) for v in size]
    # a new card stores the dict (plus its other keys) and reads back the same config
    new = replace(card, preprocessing={**(card.preprocessing or {}), **d})
    assert PreprocessConfig.from_card(new) == cfg
    if cfg.normalization.kind != "components":
        x, geo = preprocess(np.random.default_rng(0).random((300, 200)).astype(np.float32), cfg)
        assert x.dtype.is_floating_point and geo.film_hw == (300, 200)


@pytest.mark.parametrize("kwargs, word", [
    ({"size": (0, 32)}, "size"),
    ({"size": (32, 32), "resize_mode": "squash"}, "squash"),
    ({"size": (32, 32), "interpolation": "cubic"}, "cubic"),
    ({"size": (32, 32), "tta": "vflip"}, "vflip"),
    ({"size": (32, 32), "in_chans": 2}, "in_chans"),
    ({"size": (32, 32), "bits": 16}, "bits"),
    ({"size": (32, 32), "resize_mode": "fit"}, "bits=8"),
    ({"size": (32, 32), "prescale": 0.5}, "prescale"),
    ({"size": (32, 32), "crop": "pelvis"}, "pelvis"),
    ({"size": (32, 32), "version": 2}, "version"),
    ({"size": (32, 32), "normalization": {"kind": "zscore"}}, "zscore"),
    ({"size": (32, 32), "normalization": {"kind": "meanstd", "mean": [0.5, 0.5], "std": [0.2]}}, "mean"),
    ({"size": (32, 32), "normalization": {"kind": "meanstd", "mean": [0.5], "std": [0.0]}}, "std"),
])
def test_bad_values_raise_one_line_naming_them(kwargs, word):
    with pytest.raises(ConfigError) as exc:
        PreprocessConfig.from_dict(kwargs)
    msg = str(exc.value)
    assert word in msg and "\n" not in msg and ("use" in msg or "give" in msg or "set" in msg or "upgrade" in msg)


def test_card_with_a_bad_value_names_it():
    card = ModelCard.from_json(WEIGHTS / "seg_unet_ap.json")
    with pytest.raises(ConfigError, match="tta='vflip'"):
        PreprocessConfig.from_card(replace(card, preprocessing={**card.preprocessing, "tta": "vflip"}))
    with pytest.raises(ConfigError, match="size"):
        PreprocessConfig.from_card(replace(card, preprocessing={"version": 1}))


def test_one_meaning_per_preset_name():
    """The segment engine's former private 'light' is the preset 'light-flip' and still its default; the
    classifiers' 'light' (no flip) is unchanged."""
    from spine_models.config import defaults
    from spine_models.data.transforms import augmentation_preset

    assert defaults("segment")["augment"] == "light-flip"
    names = lambda preset: [type(t).__name__ for t in augmentation_preset(preset).transforms]  # noqa: E731
    assert names("light-flip") == ["Affine", "HorizontalFlip", "RandomBrightnessContrast", "RandomGamma"]
    assert names("light") == ["Affine", "RandomBrightnessContrast"]


def test_unet_meanstd_defaults_are_the_trained_ones():
    cfg = PreprocessConfig.for_unet((32, 16), {"kind": "meanstd"})
    assert cfg.normalization == Normalization("meanstd", (0.5,), (0.25,)) and cfg.interpolation == "area-taller"
    x, _ = preprocess(np.full((64, 32), 0.75, np.float32), cfg)
    np.testing.assert_allclose(x.numpy(), 1.0)
