"""AP vertebra corners at the film's own resolution: the AP U-Net finds the bodies, a patch network reads their corners.

Why a second stage: the AP U-Net reads a real film at about a quarter of its resolution; on held-out AASCE films its
bodies' corners are off by ~28 px and each body's tilt by several degrees, and the Cobb angle — the largest difference
of two tilts — inherits that noise (MAE 9.8 deg, docs/real_vertebra_eval.md). The ``vertebra_corners`` composite
keeps the U-Net (its component, pinned by sha256; it runs once per film through the shared predictor and the film
memo) and adds :class:`~spine_models.models.corners.VertebraCornerNet`, which reads one level patch per found body
(:mod:`spine_models.data.vertebra_patches`) and answers the body's four corners and endplate angles. The Cobb angle
is then measured from those corners through :mod:`spine_models.measure` exactly as from an expert's.

Training uses every body with expert corners (landmark layout, e.g. ``aasce-ap``; the phantom's landmarks.csv too),
cut around the *true* body with the errors the U-Net makes at test time drawn in
(``data.torch_datasets.VertebraPatchDataset``).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from spine_models.data.torch_datasets import VertebraPatchDataset
from spine_models.data.vertebra_patches import (PATCH_SIDE, PATCH_SIZE, WORK_HEIGHT, body_frame, decode_outputs,
                                                extract_patch, patch_films, patch_matrix, standardize, to_film, work_film)
from spine_models.engine.base import TASK_OPTIONS, BasePredictor, Film
from spine_models.engine.predictor import segment_component, segment_predictor
from spine_models.engine.runtime import network_for
from spine_models.engine.trainer import BaseTrainer
from spine_models.errors import ConfigError, DatasetError
from spine_models.measure.cobb import LEVELS
from spine_models.models.cards import ModelCard, load_state
from spine_models.models.registry import create_model
from spine_models.results.segmentation import SegmentationResult

__all__ = ["ARCH", "READOUTS", "LevelReader", "level_reader", "level_reader_file", "without_level_reader", "same_split", "landmark_parts", "VertebraCornerPredictor", "Predictor", "body_patches", "refine_bodies", "cobb_measurement", "COLUMN_GAPS", "GAP_NOTE",
           "with_centreline", "column_crop", "vertebra_box", "CornerTrainer", "train", "evaluate",
           "is_corner_model"]

ARCH = "vertebra_corners"
LEVELS_ARCH = "vertebra_levels"  # the level reader a corner card can carry (engine.levels trains it)
READOUTS = ("fused", "body_tilt", "endplates")  # measure.cobb_angle's ``angles`` on the refined corners


def is_corner_model(card: ModelCard) -> bool:
    return card.arch == ARCH


def _check_readout(value: Any, where: str) -> str:
    if value not in READOUTS:
        raise ConfigError(f"{where}={value!r}; valid: {', '.join(READOUTS)}")
    return str(value)


def body_patches(pixels: np.ndarray, bodies: dict[str, Any], *, side: float = PATCH_SIDE, size: int = PATCH_SIZE,
                 height: int = WORK_HEIGHT) -> tuple[list[str], torch.Tensor, list[np.ndarray], float]:
    """(names, the corner network's input (N, 1, size, size), each patch's matrix, the film's scale): one patch per
    body cut along its own tilt from the film resampled to ``height`` rows. Apart from :func:`refine_bodies` so that
    bench/bench_onnx.py feeds both runtimes the very patches a film gives."""
    work, scale, names, frames = _body_frames(pixels, bodies, height)
    x, mats = _cut(work, frames, side=side, size=size)
    return names, x, mats, scale


def _body_frames(pixels: np.ndarray, bodies: dict[str, Any],
                 height: int) -> tuple[np.ndarray, float, list[str], list[tuple[np.ndarray, float, float]]]:
    """(the work film, its scale, the body names, each body's frame (centre, width, tilt) in work pixels)."""
    work, scale = work_film(pixels, height)
    names = list(bodies)
    return work, scale, names, [body_frame(np.asarray(bodies[n], float).reshape(4, 2) * scale) for n in names]


def _cut(work: np.ndarray, frames: list[tuple[np.ndarray, float, float]], *, side: float,
         size: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The network's input and the patch matrices for body frames (centre, width, tilt) on the work film."""
    xs, mats = [], []
    for c, w, tilt in frames:
        m = patch_matrix(c, tilt, side * max(w, 1.0), size=size)
        xs.append(standardize(extract_patch(work, m, size))[None])
        mats.append(m)
    return torch.from_numpy(np.stack(xs)), mats


@torch.no_grad()
def refine_bodies(model: nn.Module | Callable[[torch.Tensor], torch.Tensor], pixels: np.ndarray, bodies: dict[str, Any],
                  *, device: Any = "cpu", side: float = PATCH_SIDE, size: int = PATCH_SIZE,
                  height: int = WORK_HEIGHT, passes: int = 1) -> dict[str, np.ndarray]:
    """``{name: corners (4, 2) on the film}`` read by the corner network (in eval mode) from one patch per body.

    ``model``: the network, or any callable running it (``engine.runtime.Network``: ONNX Runtime when the card asks).
    ``bodies``: ``{name: 4 corners}`` at the film's resolution (the U-Net's bodies, full height); patches by
    :func:`body_patches`. ``passes`` > 1 cuts each patch again along the tilt the previous pass read, at the same
    centre and width: why — a patch cut along the U-Net's tilt, which is shrunk towards level, is read only part of
    the way back in one pass, so strongly tilted bodies at a severe curve's ends read too level and the Cobb angle too
    small; re-cutting converges on the body's own tilt (the slopes per pass: docs/corner_passes_tuning.json). Centre
    and width stay the U-Net's so no body can drift onto a neighbour."""
    if not bodies:
        return {}
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"refine_bodies: passes={passes!r}; use an integer >= 1")
    work, scale, names, frames = _body_frames(pixels, bodies, height)
    for _ in range(passes):
        x, mats = _cut(work, frames, side=side, size=size)
        out = model(x.to(device)).float().cpu().numpy()
        corners = [to_film(decode_outputs(o, size)[0], m) for o, m in zip(out, mats)]
        frames = [(c, w, body_frame(k)[2]) for (c, w, _), k in zip(frames, corners)]
    return {n: k / scale for n, k in zip(names, corners)}


def split_bodies(mask: np.ndarray, body_height: float) -> dict[str, Any]:
    """``{name: corners}`` of the bodies in a U-Net's vertebra mask with blobs of several bodies cut apart
    (``vertebrae_from_mask(split_long=True)``), at full body height as the U-Net's own bodies are."""
    from spine_models.engine.segment import full_height
    from spine_models.measure import vertebrae_from_mask

    return full_height(vertebrae_from_mask(mask, orientation="moments", split_long=True), body_height)


COLUMN_GAPS = ("withhold", "note")  # what a gap in the found column does to the reading (card key column_gaps)
GAP_NOTE = ("parts of the column were not found (large gaps between bodies): a curve whose end vertebrae lie in a gap "
            "reads low")


def cobb_measurement(bodies: dict[str, np.ndarray], shape: tuple[int, ...], readout: str,
                     pixel_spacing_mm: tuple[float, float] | None, fusion: dict[str, float] | None = None, *,
                     min_span: int = 1, gaps: str = "withhold", max_step: float | None = None) -> dict[str, Any]:
    """The page's ``cobb`` measurement dict from refined corners (an explained "cannot measure" when too few).

    ``max_step`` (card key ``max_body_step_deg``): a body whose tilt differs from every neighbour's by more than this
    (``measure.crooked_bodies``; no spine bends 35 deg between two bodies) ends no curve; the reading says which
    bodies were left out (``bodies_left_out``, a note). None: every body counts, as before.

    ``gaps`` (card key ``column_gaps``): ``withhold`` -- a column with large gaps between its found bodies is no
    reading (the U-Net's rule, ``engine.segment._plausibility``: made for specks far from the column); ``note`` -- the
    reading stands with a note that it may read low (the corner model's bodies are tidied and named, so a gap is
    missed bodies, not a speck: docs/tune_column_gaps.py)."""
    from spine_models.engine.segment import GAP_WARNING, MIN_BODIES_COBB, _plausibility
    from spine_models.measure import cobb_angle, crooked_bodies

    if len(bodies) < MIN_BODIES_COBB:
        return {"cobb_deg": None, "n_vertebrae": len(bodies),
                "note": f"only {len(bodies)} separate vertebral bodies found; Cobb needs {MIN_BODIES_COBB}"}
    crooked = crooked_bodies(bodies, max_step) if max_step is not None else []
    res = cobb_angle({k: v for k, v in bodies.items() if k not in crooked}, pixel_spacing_mm=pixel_spacing_mm,
                     angles=readout, fusion=fusion, min_span=min_span)
    column = {k: v for k, v in bodies.items() if k != "C7"}  # a body the level reader named C7 lies above the column
    out = {**res.to_dict(), "n_vertebrae": len(bodies), **_plausibility(column, res.max_angle, shape)}
    if crooked:
        out.update(bodies_left_out=crooked, notes=[*(out.get("notes") or []), CROOKED_NOTE.format(
            names=", ".join(crooked), step=max_step)])
    if _check_gaps(gaps, "cobb_measurement: gaps") == "note" and GAP_WARNING in out["warnings"]:
        warnings = [w for w in out["warnings"] if w != GAP_WARNING]
        out.update(warnings=warnings, reliable=not warnings, gaps_in_column=True,
                   notes=[*(out.get("notes") or []), GAP_NOTE])
    return out


CROOKED_NOTE = ("{names}: read at a tilt more than {step:g} deg from every neighbour's, which no spine bends between two "
                "bodies; left out of the curves")


def _check_gaps(value: Any, where: str) -> str:
    """A card's ``column_gaps``: ``withhold`` (left out) or ``note`` (see :func:`cobb_measurement`)."""
    if value is None:
        return "withhold"
    if value not in COLUMN_GAPS:
        raise ConfigError(f"{where}={value!r}; use one of {', '.join(COLUMN_GAPS)} or leave it out")
    return str(value)


def _check_degree(value: Any, where: str) -> int | None:
    """A card's ``centreline_degree``: None (no centreline reading) or an integer 1..6."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 6:
        raise ConfigError(f"{where}={value!r}; use an integer 1-6 (3: one inflection) or leave it out")
    return value


def _check_passes(value: Any, where: str) -> int:
    """A card's ``corner_passes``: how often each body's patch is cut and read (1: once, along the U-Net's tilt)."""
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
        raise ConfigError(f"{where}={value!r}; use an integer 1-12 (1: one read along the U-Net's tilt) or leave it out")
    return value


def _check_degrees(value: Any, where: str) -> float | None:
    """A card's angle setting in degrees, None or in [0, 90]: ``centreline_margin_deg`` (None: the endplate reading
    stands alone) and ``max_body_step_deg`` (None: every body may end a curve)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 90:
        raise ConfigError(f"{where}={value!r}; use degrees in [0, 90] or leave it out")
    return float(value)


ZOOM_KEYS = {"up": (0.0, 2.0), "down": (0.0, 2.0), "min_width": (1.0, 5.0)}  # column_zoom key -> allowed range
ZOOM_MIN_BODIES = 3  # the fewest bodies that make a column worth a second look (and a second look worth keeping)


def _check_ranges(value: Any, where: str, keys: dict[str, tuple[float, float]], example: str) -> dict[str, float] | None:
    """A card's dict of numbers, each key of ``keys`` within its (low, high) range: None when left out, else floats;
    anything else gets one line naming the valid keys and ranges."""
    if value is None:
        return None
    ok = isinstance(value, dict) and set(value) == set(keys) and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and keys[k][0] <= v <= keys[k][1] for k, v in value.items())
    if not ok:
        raise ConfigError(f"{where}={value!r}; use " + ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in keys.items())
                          + f" (e.g. {example}) or leave it out")
    return {k: float(v) for k, v in value.items()}


def _check_zoom(value: Any, where: str) -> dict[str, float] | None:
    """A card's ``column_zoom``: None (one look at the whole film) or {up, down, min_width} (see :func:`column_crop`)."""
    return _check_ranges(value, where, ZOOM_KEYS, '{"up": 0.3, "down": 0.1, "min_width": 1.5}')


def column_crop(bodies: dict[str, Any], shape: tuple[int, ...], zoom: dict[str, float]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the film cut about the column ``bodies`` span, for a second look; None when that keeps at least
    90 % of both sides (nothing to gain).

    Why: the AP U-Net reads every film stretched to 512x256; on a film framed head to pelvis (cadma-vertebra, many
    Fraiwan films) the column is a narrow strip of it, the upper thoracic bodies are missed and the found ones are
    read coarsely. The crop spans the bodies' height plus ``up`` / ``down`` shares of it above and below (the missed
    bodies are mostly at the top) and is at least half as wide as high (the U-Net's own aspect: no extra stretch) and
    ``min_width`` times the bodies' width (a curve stays inside)."""
    pts = np.concatenate([np.asarray(c, float).reshape(4, 2) for c in bodies.values()])
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    H, W = int(shape[0]), int(shape[1])
    top, bottom = max(0.0, y0 - zoom["up"] * (y1 - y0)), min(float(H), y1 + zoom["down"] * (y1 - y0))
    half = max((bottom - top) / 2, (x1 - x0) * zoom["min_width"]) / 2
    left, right = max(0.0, (x0 + x1) / 2 - half), min(float(W), (x0 + x1) / 2 + half)
    box = int(left), int(top), int(np.ceil(right)), int(np.ceil(bottom))
    if box[2] - box[0] < 8 or box[3] - box[1] < 8 or (box[3] - box[1] >= 0.9 * H and box[2] - box[0] >= 0.9 * W):
        return None
    return box


BOX_KEYS = {"width": (0.5, 2.0), "height": (0.5, 2.0), "tilt_share": (0.0, 1.0)}  # vertebra_box key -> allowed range


def _check_box(value: Any, where: str) -> dict[str, float] | None:
    """A card's ``vertebra_box``: None (a vertebra's box is its body's) or {width, height, tilt_share} (see
    :func:`vertebra_box`)."""
    return _check_ranges(value, where, BOX_KEYS, '{"width": 1.25, "height": 1.1, "tilt_share": 0.5}')


def vertebra_box(corners: Any, convention: dict[str, float] | None = None) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) of the vertebra whose body has ``corners`` (TL, TR, BR, BL).

    Why two boxes: the corners are the vertebral *body's* (AASCE's expert corners); a vertebra-box dataset (the YOLO
    layout: cadma-vertebra, SPEC's external vertebra tests) draws the whole vertebra -- wider than its body (pedicles,
    processes) and, on a tilted vertebra, not the full axis-aligned extent of the tilted body. ``convention`` None: the
    body's own box (the corners' extent, ``metrics.landmarks.quad_box``). Else a box centred on the body, ``width`` /
    ``height`` times the body's own width / height measured along its axis, grown by ``tilt_share`` of what the tilt
    adds to an axis-aligned box (1: the tilted body's full extent, 0: none); fitted on training films by
    docs/tune_vertebra_box.py."""
    from spine_models.metrics.landmarks import quad_box

    c = np.asarray(corners, float).reshape(4, 2)
    if not convention:
        return quad_box(c)
    top, bottom = c[1] - c[0], c[2] - c[3]
    w = (np.hypot(*top) + np.hypot(*bottom)) / 2
    h = (np.hypot(*(c[3] - c[0])) + np.hypot(*(c[2] - c[1]))) / 2
    tilt = np.arctan2(top[1] + bottom[1], top[0] + bottom[0])
    cos, sin, share = abs(np.cos(tilt)), abs(np.sin(tilt)), convention["tilt_share"]
    bw = convention["width"] * (w * cos + share * h * sin)
    bh = convention["height"] * (h * cos + share * w * sin)
    mx, my = c.mean(axis=0)
    return float(mx - bw / 2), float(my - bh / 2), float(mx + bw / 2), float(my + bh / 2)


def _band_about(reading: dict[str, Any], value: float) -> list[float] | None:
    """The reading's band (its half-width kept) moved to a new angle ``value``; None when the reading has none."""
    band = reading.get("band")
    if not band:
        return None
    half = (band[1] - band[0]) / 2
    return [round(value - half, 2), round(value + half, 2)]


def with_centreline(cobb: dict[str, Any] | None, bodies: dict[str, np.ndarray], degree: int, *,
                    margin: float | None = None) -> dict[str, Any] | None:
    """The ``cobb`` measurement with the column's centreline reading beside it: ``centreline_deg`` (the Cobb angle of
    a smooth curve through the body centres) and ``centreline`` (its points, for drawing).

    Why: the endplate reading takes the two most tilted bodies, so one crooked body reads a curve on a straight
    column; the centreline cannot follow one body. Findings call scoliosis only when both read a curve
    (``report.findings``). The other way round, where the bodies at a severe curve's ends were not found the
    endplate reading loses most of the curve while the centreline still follows it: with ``margin`` the shown angle
    is raised to the centreline's reading less ``margin`` when it is below that (the endplate reading kept under
    ``readings_deg.endplates``, a note saying so). Nothing is added to a failed measurement or when too few bodies
    give no centreline."""
    if not isinstance(cobb, dict) or cobb.get("failed"):
        return cobb
    from spine_models.measure import centreline_cobb

    line = centreline_cobb(bodies, degree=degree)
    if line is None:
        return cobb
    out = {**cobb, "centreline_deg": round(line.angle_deg, 2), "centreline": line.to_dict()["points"]}
    value = cobb.get("cobb_deg")
    if margin is not None and isinstance(value, (int, float)) and line.angle_deg - margin > value:
        raised = round(min(line.angle_deg - margin, 90.0), 2)
        out.update(cobb_deg=raised, band=_band_about(cobb, raised) or [round(raised - 5, 2), round(raised + 5, 2)],
                   readings_deg={**(cobb.get("readings_deg") or {}), "endplates": value},
                   notes=[*(cobb.get("notes") or []),
                          f"raised from the endplates' {value:.1f}° to the centreline's {line.angle_deg:.1f}° less "
                          f"{margin:.0f}°: the endplate lines drawn miss part of the curve (bodies at its ends not found)"])
    return out


def _mean_read(own: dict[str, Any], other: dict[str, Any] | None, *, fallback: bool = False) -> dict[str, Any]:
    """The corners' Cobb reading with its angles replaced by the mean of its and the U-Net's own reading.

    Why (when the card says ``mean_with_locator``): the two readings come from different corners (the U-Net's
    mask outlines, the patch network's), so their errors are partly independent and their mean is steadier on
    validation films (docs/tune_corner_readout.py). The curves, end vertebrae and apex stay the corners' own; when
    either reading failed or is not shown, the mean is not taken and the page says why -- except with
    ``fallback``, where a failed U-Net reading leaves the corners' own reading (it fails where its one blob covers
    several bodies, which the corners' stage cuts apart), with a note saying so."""
    from spine_models.measure import cobb_read

    a, b = cobb_read(own), cobb_read(other)
    if fallback and a.ok and not b.ok:
        return {**own, "readings_deg": {"corners": a.value, "u_net": None},
                "notes": [f"the corners' reading alone: the AP U-Net's own reading failed ({b.reason})"]}
    if not (a.ok and b.ok):
        why = a.reason if not a.ok else f"the AP U-Net's own reading failed ({b.reason})"
        return {**own, "cobb_deg": None, "note": why}
    mean = (a.value + b.value) / 2
    out = {**own, "cobb_deg": round(mean, 2), "readings_deg": {"corners": a.value, "u_net": b.value}}
    band = _band_about(own, mean)
    if band:
        out["band"] = band
    return out


class LevelReader:
    """A ``vertebra_levels`` network (:class:`~spine_models.models.corners.VertebraLevelNet`) naming the bodies a corner
    model found: one wide patch per body (``data.vertebra_patches.level_patches``), level log-probabilities, and
    ``measure.decode_levels`` down the column. Why: counting up from the lowest body found names the whole column
    wrong when the film shows C7 or the sacrum as one body more, or a body is missed (the figures: the corner card's notes)."""

    def __init__(self, card: ModelCard, device: Any = "cpu") -> None:
        sd, kw = load_state(card)
        self.card, self.device = card, device
        self.classes = [str(c) for c in (card.classes or [])]
        if len(self.classes) < 2:
            raise ConfigError(f"level reader {card.id!r}: card classes {card.classes!r}; a level reader names levels "
                              "(e.g. C7, T1..L5, S1)")
        self.model = create_model(LEVELS_ARCH, task="segment", n_levels=len(self.classes), width=int(kw.get("width", 16)))
        self.model.load_state_dict(sd)
        self.model.to(device).eval()
        pre = card.preprocessing or {}
        self.side = float(pre.get("level_side", 7.0))
        self.size = int(pre.get("level_patch", PATCH_SIZE))
        # through the reader card's runtime (engine.runtime: ONNX Runtime where bench/bench_onnx.py recorded it)
        self.net = network_for(card, self.model, (1, 1, self.size, self.size), device)
        self.height = int(pre.get("work_height", WORK_HEIGHT))
        self.skip = float(pre.get("skip_log_prob", -3.0))
        self.tta = str(pre.get("tta", "none"))  # hflip: log-probabilities averaged with the mirrored patches'
        if self.tta not in ("none", "hflip"):
            raise ConfigError(f"level reader {card.id!r}: tta={self.tta!r}; use none or hflip")

    @torch.no_grad()
    def log_probs(self, pixels: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """(N, levels) log-probabilities for bodies (N, 4, 2) at the film's resolution."""
        x, views = self.inputs(pixels, corners)
        out = torch.log_softmax(self.net(torch.from_numpy(x).to(self.device)).float(), dim=1).cpu().numpy()
        return out.reshape(views, len(corners), -1).mean(axis=0)  # one batch: the patches and their mirrors

    def inputs(self, pixels: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, int]:
        """(the network's one batch: each body's wide patch, then with ``hflip`` their mirrors; the number of views)."""
        from spine_models.data.vertebra_patches import level_patches

        work, scale = work_film(pixels, self.height)
        views = (False, True) if self.tta == "hflip" else (False,)  # a level is the same mirrored
        x = np.concatenate([level_patches(work, np.asarray(corners, float) * scale, side=self.side, size=self.size,
                                          mirror=mirror) for mirror in views])
        return x, len(views)

    def provenance(self) -> dict[str, Any]:
        """Where the bodies' names come from, for the reader of a finding: this reader's id and the share of bodies
        it names as experts do on held-out films (its card's ``vertebra_level_accuracy``; None when not measured)."""
        acc = (self.card.metrics or {}).get("vertebra_level_accuracy")
        value = acc.get("value") if isinstance(acc, dict) else None
        return {"by": "level reader", "model": self.card.id,
                "held_out_accuracy": None if value is None else round(float(value), 3)}

    def name(self, pixels: np.ndarray, bodies: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``bodies`` renamed top to bottom by their decoded levels; as given when there are more bodies than levels."""
        from spine_models.measure import decode_levels

        if not bodies or len(bodies) > len(self.classes):
            return bodies
        order = sorted(bodies, key=lambda k: float(np.asarray(bodies[k], float).reshape(4, 2)[:, 1].mean()))
        corners = np.stack([np.asarray(bodies[k], float).reshape(4, 2) for k in order])
        idx = decode_levels(self.log_probs(pixels, corners), skip_log_prob=self.skip)
        return {self.classes[i]: c for i, c in zip(idx, corners)}


def without_level_reader(card: ModelCard) -> ModelCard:
    """A corner card as the corner model alone (its bodies counted up from the lowest): what a level reader trains
    behind and is compared with."""
    import dataclasses

    return dataclasses.replace(card, preprocessing={k: v for k, v in (card.preprocessing or {}).items()
                                                    if k != "level_reader"})


def level_reader_file(value: Any, where: str) -> Path:
    """The card file a corner card's ``level_reader`` entry names (``{"card": path, repo-relative or absolute, ...}``):
    beside the shipped cards (``$SPINE_MODELS_WEIGHTS`` deployments), else under the repo."""
    from spine_models.errors import WeightsNotAvailableError
    from spine_models.models.cards import REPO_ROOT, weights_dir

    if not isinstance(value, dict) or not value.get("card"):
        raise ConfigError(f"{where}={value!r}; use {{\"card\": \"weights/components/<id>.json\", \"sha256\": \"...\"}}")
    path = Path(str(value["card"]))
    if not path.is_absolute():
        moved = weights_dir() / path.relative_to("weights") if path.parts[:1] == ("weights",) else None
        path = moved if moved is not None and moved.is_file() else REPO_ROOT / path
    if not path.is_file():
        raise WeightsNotAvailableError(f"{where}: no level reader card at {path}; ship it with docs/ship_model.py "
                                       "--component-of or drop the card's level_reader")
    return path


def level_reader(value: Any, where: str, device: Any = "cpu") -> LevelReader | None:
    """A corner card's ``level_reader`` (``{"card": path of the reader's card, repo-relative or absolute, "sha256":
    its weights'}``, or a ModelCard) as a :class:`LevelReader`; None when absent."""
    from spine_models.engine.predictor import check_component

    if value is None or value == {}:
        return None
    if isinstance(value, ModelCard):
        return LevelReader(value, device)
    path = level_reader_file(value, where)
    card = ModelCard.from_json(path)
    if card.arch != LEVELS_ARCH:
        raise ConfigError(f"{where}: {path} is a {card.arch!r} model, not a {LEVELS_ARCH!r} level reader")
    check_component("level_reader", card, str(value.get("sha256", "")))
    return LevelReader(card, device)


class VertebraCornerPredictor(BasePredictor):
    """``predict(image, pixel_spacing_mm=None, measure=True, threshold=None) -> SegmentationResult``: the U-Net's
    masks, each body with corners read at the film's resolution, and the Cobb angle measured from them."""

    task = "segment"
    OPTIONS = TASK_OPTIONS["segment"]

    def __init__(self, card: ModelCard, device: Any = None, *, levels: ModelCard | None = None) -> None:
        if not is_corner_model(card):
            raise ConfigError(f"model {card.id!r}: arch {card.arch!r} is not {ARCH!r}")
        super().__init__(card, device)
        sd, kw = load_state(card)
        self.locator = segment_component(kw, "locator", device)
        self.patch = int(kw.get("patch", PATCH_SIZE))
        self.model = create_model(ARCH, task="segment", width=int(kw.get("width", 16)), patch=self.patch)
        self.model.load_state_dict(sd)
        self.model.to(self.device).eval()
        # the corner network through the card's runtime (engine.runtime; the U-Net follows its own card)
        self.net = network_for(card, self.model, (1, 1, self.patch, self.patch), self.device)
        pre = self.card.preprocessing or {}
        self.side = float(pre.get("patch_side", PATCH_SIDE))
        self.height = int(pre.get("work_height", WORK_HEIGHT))
        # each patch re-cut along the tilt the previous pass read (refine_bodies; docs/tune_corner_passes.py)
        self.passes = _check_passes(pre.get("corner_passes"), f"model {card.id!r}: corner_passes")
        # a second look at the column cut out of a film framed wider than it (column_crop; docs/tune_column_zoom.py)
        self.zoom = _check_zoom(pre.get("column_zoom"), f"model {card.id!r}: column_zoom")
        # each vertebra's box as vertebra-box datasets draw it, from its body's corners (docs/tune_vertebra_box.py)
        self.box = _check_box(pre.get("vertebra_box"), f"model {card.id!r}: vertebra_box")
        self.readout = _check_readout(pre.get("cobb_angles", "fused"), f"model {card.id!r}: cobb_angles")
        self.fusion = {str(k): float(v) for k, v in (pre.get("fusion") or {}).items()}  # docs/tune_corner_readout.py
        self.mean_with_locator = bool(pre.get("mean_with_locator", False))
        # cut the U-Net's blobs that hold several bodies before reading each body (measure.cobb._split_long)
        self.split_long = bool(pre.get("split_long", False))
        # duplicates and fragments out of the refined bodies (measure.tidy_bodies keywords: close, fragment)
        self.tidy = {str(k): float(v) for k, v in (pre.get("tidy") or {}).items()}
        self.min_span = int(pre.get("min_span", 1))  # the fewest vertebrae a Cobb curve spans
        # a column with large gaps between its bodies: no reading, or the reading with a note (docs/tune_column_gaps.py)
        self.gaps = _check_gaps(pre.get("column_gaps"), f"model {card.id!r}: column_gaps")
        # a body read at a tilt no neighbour is near ends no curve (measure.crooked_bodies; None: every body counts)
        self.max_step = _check_degrees(pre.get("max_body_step_deg"), f"model {card.id!r}: max_body_step_deg")
        # the U-Net's own reading failed (e.g. one blob over the thoracic column): the corners' reading stands
        self.locator_fallback = bool(pre.get("locator_fallback", False))
        # the column's centreline Cobb beside the endplate reading (measure.centreline_cobb; docs/tune_scoliosis_call.py)
        self.centreline_degree = _check_degree(pre.get("centreline_degree"), f"model {card.id!r}: centreline_degree")
        # the shown angle is never below the centreline's reading less this margin (None: the endplates alone)
        self.centreline_margin = _check_degrees(pre.get("centreline_margin_deg"), f"model {card.id!r}: centreline_margin_deg")
        self.structures = list(self.locator.structures)
        self.threshold = self.locator.threshold
        # bodies named by a learned level reader instead of counted from the bottom (``levels`` overrides the card's)
        self.levels = level_reader(levels if levels is not None else pre.get("level_reader"),
                                   f"model {card.id!r}: level_reader", self.device)

    def read(self, image: Any, **options: Any) -> Film:
        film = self.locator.read(image, **options)
        film.extra["image"] = image  # the locator is called on the same input, so its film memo entry is shared
        return film

    def preprocess(self, film: Film, **_: Any) -> Film:
        return film

    def infer(self, film: Film, *, pixel_spacing_mm: Any = None, measure: bool = True, threshold: float | None = None,
              **_: Any) -> tuple[SegmentationResult, dict[str, np.ndarray]]:
        base = self.locator.predict(film.extra["image"], pixel_spacing_mm=pixel_spacing_mm, measure=measure,
                                    threshold=threshold)
        if not measure or not base.vertebrae:
            return base, {}
        refined = self._bodies(film.pixels, base)
        crop = column_crop(refined, film.pixels.shape, self.zoom) if self.zoom and len(refined) >= ZOOM_MIN_BODIES else None
        if crop is not None:
            zoomed, again = self._zoomed(film, base, crop, threshold)
            if len(again) >= ZOOM_MIN_BODIES:  # the second look found a column: it stands
                return zoomed, again
        return base, self._named(film.pixels, refined)

    def _named(self, pixels: np.ndarray, bodies: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``bodies`` named by the card's level reader on the ``pixels`` they were read on (as counted without one).
        Only the look that stands is named: the reader costs ~30 ms a film on 2 CPU cores (its network
        on ONNX Runtime: its card's runtime)."""
        return self.levels.name(pixels, bodies) if self.levels is not None else bodies

    def _bodies(self, pixels: np.ndarray, base: SegmentationResult) -> dict[str, np.ndarray]:
        """The refined bodies of one U-Net result on ``pixels`` (the film, or the crop the zoom looks at)."""
        bodies = {v["name"]: np.asarray(v["corners"], float) for v in base.vertebrae}
        cut = split_bodies(base.masks["vertebra"], self.locator.body_height) if (
            self.split_long and "vertebra" in base.masks) else {}
        refined = self._refine(pixels, cut or bodies)
        if cut and len(refined) > len(LEVELS) + 1 >= len(bodies):
            # cutting gave more bodies than a column has (T1-L5 and the sacrum): the cut pieces are not bodies
            # (cervical or pelvic blobs, a cut through one body); the U-Net's own bodies stand
            refined = self._refine(pixels, bodies)
        return refined

    def _zoomed(self, film: Film, base: SegmentationResult, crop: tuple[int, int, int, int],
                threshold: float | None) -> tuple[SegmentationResult, dict[str, np.ndarray]]:
        """The U-Net and the corners again on the film cut to ``crop`` (x0, y0, x1, y1), mapped back onto the film:
        masks pasted into the first look's, bodies and boxes shifted."""
        import dataclasses

        x0, y0, x1, y1 = crop
        sub = np.ascontiguousarray(film.pixels[y0:y1, x0:x1])
        zb = self.locator.predict(sub, pixel_spacing_mm=film.spacing, measure=True, threshold=threshold)
        if not zb.vertebrae:
            return base, {}
        again = self._named(sub, self._bodies(sub, zb))
        shift = np.array([x0, y0], float)
        masks = {}
        for k, m in base.masks.items():
            full = np.array(m, copy=True)
            full[y0:y1, x0:x1] = zb.masks[k]
            masks[k] = full
        verts = [{**v, "corners": [[a + x0, b + y0] for a, b in v["corners"]],
                  "box": [v["box"][0] + x0, v["box"][1] + y0, v["box"][2] + x0, v["box"][3] + y0]} for v in zb.vertebrae]
        return dataclasses.replace(base, masks=masks, vertebrae=verts), {n: c + shift for n, c in again.items()}

    def _refine(self, pixels: np.ndarray, bodies: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The corners' stage on ``bodies``, less duplicates and fragments when the card says ``tidy``."""
        refined = refine_bodies(self.net, pixels, bodies, device=self.device, side=self.side,
                                size=self.patch, height=self.height, passes=self.passes)
        if self.tidy:
            from spine_models.measure import tidy_bodies

            refined = tidy_bodies(refined, **self.tidy)
        return refined

    def postprocess(self, raw: tuple[SegmentationResult, dict[str, np.ndarray]], film: Film, x: Any, *,
                    measure: bool = True, **_: Any) -> SegmentationResult:
        base, refined = raw
        meas = dict(base.measurements)
        vertebrae = base.vertebrae
        if refined:
            score = {v["name"]: v["score"] for v in base.vertebrae}
            if self.split_long or self.tidy or self.levels is not None:  # bodies cut out of blobs or renamed: the share of the U-Net's mask they cover
                from spine_models.engine.segment import vertebra_instances

                score = {v["name"]: v["score"] for v in vertebra_instances(refined, base.masks["vertebra"].astype(np.float32))}
            vertebrae = [{"name": n, "corners": [[round(float(a), 1), round(float(b), 1)] for a, b in c],
                          "box": [round(float(v), 1) for v in vertebra_box(c, self.box)], "score": score[n]} for n, c in refined.items()]
            from spine_models.measure import measured

            # a read that raises on degenerate corners is this film's failed measurement, not the end of the result
            meas["cobb"] = measured("cobb", cobb_measurement, refined, film.pixels.shape, self.readout, film.spacing,
                                    self.fusion or None, min_span=self.min_span, gaps=self.gaps, max_step=self.max_step)
            if self.mean_with_locator:
                meas["cobb"] = _mean_read(meas["cobb"], base.measurements.get("cobb"), fallback=self.locator_fallback)
            if self.centreline_degree:
                meas["cobb"] = with_centreline(meas["cobb"], refined, self.centreline_degree, margin=self.centreline_margin)
            if self.levels is not None and isinstance(meas["cobb"], dict):
                meas["cobb"] = {**meas["cobb"], "level_names": self.levels.provenance()}
        return SegmentationResult(model_id=self.card.id, source=base.source, image_size=base.image_size,
                                  device=str(self.device), structures=list(base.structures), masks=base.masks,
                                  measurements=meas, vertebrae=vertebrae)

    def memo_settings(self) -> tuple:
        return (self.readout, tuple(sorted(self.fusion.items())), self.mean_with_locator, self.split_long,
                tuple(sorted(self.tidy.items())), self.min_span, self.locator_fallback, self.centreline_degree,
                self.centreline_margin, self.gaps, self.max_step, self.side, self.height, self.patch, self.passes,
                tuple(sorted((self.zoom or {}).items())), tuple(sorted((self.box or {}).items())),
                None if self.levels is None else (self.levels.card.sha256, self.levels.card.weights, self.levels.skip,
                                                  self.levels.tta),
                self.locator.memo_settings())


# ------------------------------------------------------------------------------------------ training
def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Corners (Smooth L1 on [-1, 1] coordinates) + endplate angles (Smooth L1 in tens of degrees)."""
    f = nn.functional.smooth_l1_loss
    return f(out[:, :8], y[:, :8], beta=0.05) + f(out[:, 8:], y[:, 8:], beta=0.1)


def _split_record(card: ModelCard) -> dict[str, Any]:
    rec = (card.data or {}).get("split")
    return rec if isinstance(rec, dict) else {}


def landmark_parts(arch: str, whose: str, rec: dict[str, Any], cfg: dict[str, Any],
                   seed: int) -> tuple[tuple[float, ...], str, dict[str, Any]]:
    """(ratios, method, parts): ``cfg["data"]`` (films with expert corners) split per patient as the component's
    recorded split ``rec`` (:func:`same_split`), so a stage trained behind a component never sees its held-out patients."""
    from spine_models.data.adapters import load_dataset
    from spine_models.data.splits import split_dataset

    ratios, method = same_split(arch, whose, rec, cfg, seed)
    ds = load_dataset(cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]], task="segment")
    if not any(s.landmarks for s in ds.samples):
        raise DatasetError(f"no vertebra corners in the data; {arch} needs the landmark layout (landmarks.csv)",
                           str(cfg["data"]))
    return ratios, method, split_dataset(ds, ratios=ratios, seed=seed, stratify=False, method=method)


def same_split(arch: str, whose: str, rec: dict[str, Any], cfg: dict[str, Any], seed: int) -> tuple[tuple[float, ...], str]:
    """(ratios, method) of ``cfg``'s split, refused unless it is the component's recorded split ``rec`` (same method,
    ratios and seed): a stage trained on another split would see the patients its component holds out."""
    from spine_models.data.splits import parse_ratios

    ratios, method = parse_ratios(cfg["split"]), str(cfg["split_method"])
    if rec and (tuple(parse_ratios(rec.get("ratios", ratios))) != tuple(ratios) or rec.get("method", method) != method
                or int(rec.get("seed", seed)) != seed):
        raise ConfigError(f"{arch}: the split must be the {whose}'s (method {rec.get('method')}, ratios "
                          f"{rec.get('ratios')}, seed {rec.get('seed')}) so its held-out patients stay unseen; got "
                          f"{method} {cfg['split']} seed {seed}: pass --set split_method=... --set 'split=\"...\"' --seed ...")
    return ratios, method


class CornerTrainer(BaseTrainer):
    """The corner network on the one Trainer contract (``engine.trainer.BaseTrainer``): patches around the experts'
    bodies with the U-Net's errors drawn in, corner + angle Smooth L1, validation by the endplate-angle error.
    The split is the U-Net's own (same method, ratios and seed), so the patients it never saw stay unseen by both
    stages; another split is refused."""

    task = "segment"

    def __init__(self, cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> None:
        from spine_models.config import defaults

        super().__init__({**defaults("segment"), **{k: v for k, v in cfg.items() if v is not None}}, out_dir,
                         callbacks=callbacks, quiet=quiet)

    def get_dataset(self) -> None:
        from spine_models._env import get_device
        from spine_models.engine.trainer import make_generator, seed_everything, seed_worker

        cfg, quiet = self.cfg, self.quiet
        if not cfg.get("locator"):
            raise ConfigError(f"{ARCH}: set the AP U-Net with --set locator=<shipped id or run folder> "
                              "(a segment model with structure vertebra, view ap)")
        seed_everything(self.seed)
        self.device = get_device(cfg.get("device"))
        self.locator = locator = segment_predictor(cfg["locator"])
        if "vertebra" not in locator.structures or locator.card.view == "lat":
            raise ConfigError(f"{ARCH}: locator {locator.card.id!r} (view {locator.card.view}, structures "
                              f"{locator.structures}) is no AP vertebra U-Net")
        self.locator_split = _split_record(locator.card)
        self.ratios, self.method, self.parts = landmark_parts(ARCH, "locator", self.locator_split, cfg, self.seed)
        parts = self.parts
        t0 = time.perf_counter()
        self.tr = tr = patch_films(parts["train"].samples, quiet=quiet)
        va = patch_films(parts["val"].samples, quiet=quiet)
        if len(tr) < 2:
            raise DatasetError(f"too few films with corners to train on ({len(tr)} in the train part)", str(cfg["data"]))
        if not va:
            va = tr
            print(f"{ARCH}: no validation films with corners: validating on the train part (early stopping is then "
                  "optimistic)", file=sys.stderr)
        self.size, self.side = size, side = int(cfg["corner_patch"]), float(cfg["corner_side"])
        self.jitter = jitter = float(cfg["corner_jitter_deg"])
        self.width = int(cfg["corner_width"])
        if not quiet:
            print(f"{ARCH}: {sum(len(f.corners) for f in tr)} training bodies on {len(tr)} films, "
                  f"{sum(len(f.corners) for f in va)} validation bodies; {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        self.generator = make_generator(self.seed)
        self.train_loader = torch.utils.data.DataLoader(
            VertebraPatchDataset(tr, size=size, side=side, jitter_deg=jitter, augment=cfg.get("augment", "light") != "none"),
            batch_size=int(cfg["batch"]), shuffle=True, generator=self.generator, num_workers=int(cfg["workers"]),
            worker_init_fn=seed_worker, drop_last=True)
        self.val_loader = torch.utils.data.DataLoader(
            VertebraPatchDataset(va, size=size, side=side, jitter_deg=jitter, augment=False, seed=self.seed), batch_size=256)

    def get_model(self) -> nn.Module:
        return create_model(ARCH, task="segment", width=self.width, patch=self.size).to(self.device)

    def get_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=float(self.cfg["lr"]), weight_decay=float(self.cfg["weight_decay"]))

    def get_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(self.cfg["epochs"])))

    def loss(self, output: Any, target: Any) -> torch.Tensor:
        return _loss(output, target)

    @torch.no_grad()
    def validate(self, m: nn.Module) -> dict[str, float]:
        was = m.training
        m.eval()
        ang, cor = [], []
        for x, y in self.val_loader:
            o = m(x.to(self.device)).float().cpu()
            ang.append((o[:, 8:] - y[:, 8:]).abs().numpy() * 10)
            cor.append(((o[:, :8] - y[:, :8]).reshape(-1, 4, 2).norm(dim=-1)).numpy() * self.size / 2)
        m.train(was)
        return {"val_angle_mae_deg": float(np.concatenate(ang).mean()),
                "val_corner_error_patch_px": float(np.concatenate(cor).mean())}

    def fit_options(self) -> dict[str, Any]:
        return {"val_metric": "val_angle_mae_deg", "mode": "min", "patience": int(self.cfg["patience"]),
                "generator": self.generator}

    def finish(self, model: nn.Module, res: Any) -> Path:
        from spine_models.engine.trainer import new_card, write_card
        from spine_models.models.provenance import most_restrictive_license, sources_in_text

        cfg, out, locator, tr = self.cfg, self.out, self.locator, self.tr
        model.load_state_dict(res.best_state)
        kw = {"locator": str(cfg["locator"]), "locator_sha256": locator.card.sha256 or "", "width": self.width,
              "patch": self.size}
        srcs = sources_in_text(str(cfg["data"]))
        srcs += [x for x in (locator.card.sources or []) if x not in srcs]  # the U-Net's sources are this model's too
        card = new_card(
            out, task="segment", arch=ARCH, state_dict=model.state_dict(), arch_kwargs=kw,
            id=str(cfg.get("id") or f"{ARCH}-{out.name}"), view="ap",
            trained_on=f"landmark layout {cfg['data']} ({sum(len(f.corners) for f in tr)} bodies with expert corners on "
                       f"{len(tr)} films of {len(self.parts['train'].patients)} patients), behind the AP U-Net {locator.card.id}",
            input_size=[self.size, self.size], train_command=str(cfg.get("train_command", "")),
            license=most_restrictive_license(srcs) if srcs else locator.card.license,
            structures=list(locator.structures), thresholds=dict(locator.card.thresholds or {}),
            in_chans=1, normalization={"kind": "components"},  # the U-Net's own; patches: vertebra_patches.standardize
            preprocessing={"patch": "spine_models.data.vertebra_patches", "patch_side": self.side,
                           "work_height": WORK_HEIGHT, "jitter_deg": self.jitter,
                           "cobb_angles": _check_readout(cfg["corner_readout"], "segment config: corner_readout")},
            data={"split": {"method": self.method, "ratios": list(self.ratios), "seed": self.seed, "stratify": False,
                            "locator_split": self.locator_split}},
            sources=srcs)
        return write_card(card, out)


def train(cfg: dict, out_dir: str | Path, *, callbacks: Any = None, quiet: bool = False) -> Path:
    """Train the corner network behind an AP U-Net (``--set locator=``) on films with corners (:class:`CornerTrainer`);
    returns the run's card.json."""
    return CornerTrainer(cfg, out_dir, callbacks=callbacks, quiet=quiet).train()


Predictor = VertebraCornerPredictor  # the engine modules' common name (engine.predictor_class)


def evaluate(card: ModelCard, dataset: Any, *, quiet: bool = False, n_resamples: int = 1000,
             predictor: Any = None) -> dict[str, Any]:
    """The segment report (Cobb, corners, vertebra AP50 ...) of the U-Net + corner network (``engine.segment.evaluate``)."""
    from spine_models.engine.segment import evaluate as seg_evaluate

    return seg_evaluate(predictor or VertebraCornerPredictor(card), dataset, quiet=quiet, n_resamples=n_resamples)
