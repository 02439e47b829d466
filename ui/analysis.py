"""What the pages run: read uploads, make phantom examples, run models, score a mask, evaluate datasets.

Why not in the pages: these call into torch-backed engines; pages only call these functions and show
what comes back. Every user-input problem surfaces as a SpineInputError with a one-line message.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from spine_models.errors import SpineInputError

__all__ = ["read_upload", "default_models", "example_films", "mri_example", "run_models", "fitting_cards", "infer_view",
           "read_mask_upload", "compute_shap", "save_upload", "evaluate_cached", "evaluate_watched", "phantom_dataset", "model_ref",
           "dataset_hash", "report_roc", "roc_curves", "default_pair", "training_overlap", "split_sizes", "SMALL_PART_PATIENTS", "disagreements", "image_paths",
           "load_study", "mri_selection", "sagittal_overlay", "extract_upload_zip", "frame_pixels", "roi_overlay", "disc_predictions", "report_html", "report_pdf",
           "disc_cards", "grade_slice", "sagittal_frame"]

EXAMPLE_KINDS = ("xray-ap", "xray-lat")


def read_upload(data: bytes, name: str) -> Any:
    """An uploaded file's bytes -> de-identified Radiograph (raises SpineInputError for bad files)."""
    from spine_models.io import read_image_bytes

    return read_image_bytes(data, name)


def _synth(kind: str, n: int, out: Path, seed: int) -> None:
    """Run the phantom generator (`spine-models synth`) into ``out``; SpineInputError with its message if it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "spine_models.cli", "synth", kind, "--n", str(n), "--out", str(out),
           "--seed", str(seed), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise SpineInputError(f"the phantom generator could not make {kind} examples ({last}); upload a film instead")


@st.cache_data(show_spinner="Generating phantom examples (first use only)…")
def example_films(kind: str = "xray-ap", n: int = 3, seed: int = 7) -> list[str]:
    """Paths of a few small phantom films, generated once into the cache dir (never committed)."""
    from spine_models._env import cache_dir

    out = cache_dir() / "examples" / f"{kind}-n{n}-s{seed}"
    images = sorted((out / "images").glob("*.png")) if (out / "images").is_dir() else []
    if not images:
        _synth(kind, n, out, seed)
        images = sorted((out / "images").glob("*.png"))
    return [str(p) for p in images]


@st.cache_data(show_spinner="Generating a phantom MRI study (first use only)…")
def mri_example(seed: int = 7) -> str:
    """Folder of one phantom lumbar MRI study (T2 SAG, T2 AX, MYELO)."""
    from spine_models._env import cache_dir

    out = cache_dir() / "examples" / f"mri-lumbar-s{seed}"
    if not (out / "MANIFEST.json").is_file():
        _synth("mri-lumbar", 1, out, seed)
    studies = [p for p in sorted(out.iterdir()) if p.is_dir() and any(p.rglob("*.dcm"))]
    if not studies:
        raise SpineInputError(f"{out}: the phantom MRI study holds no DICOM files; upload a study ZIP instead")
    return str(studies[0])


def fitting_cards(cards: Sequence[Any], rad: Any) -> list[Any]:
    """Cards whose view fits the image (``engine.predictor.card_fits``); two-view models need two films."""
    from spine_models.engine.predictor import card_fits

    return [c for c in cards if card_fits(c, rad) and not c.arch.startswith("twoview")]


def default_models(cards: Sequence[Any], *, uploaded: bool) -> tuple[list[str], str]:
    """(ids checked by default, note). Why: on an uploaded (real) film only models validated on real films
    should speak first; phantom-only models stay one click away and are labelled. When no fitting model is
    real-validated (a lateral film, say) all run, each under the phantom-trained label."""
    from spine_models.models.cards import is_real_validated

    ids = [c.id for c in cards]
    if not uploaded:
        return ids, ""
    real = [c.id for c in cards if is_real_validated(c)]
    if not real:
        return ids, ("No model validated on real films fits this image: every result below is from a "
                     "phantom-trained model and is labelled so.")
    # a real-validated composite runs its component inside it (e.g. the AP U-Net behind the corner model): the
    # component alone would show a second, less accurate reading of the same film
    inside = {str((c.arch_kwargs or {}).get("locator")) for c in cards if c.id in real}
    real = [i for i in real if i not in inside] or real
    left = [i for i in ids if i not in real]
    return real, (f"Running the {len(real)} model(s) validated on real films by default; "
                  f"{len(left)} other model(s) can be added (phantom-only results are labelled).") if left else ""


def infer_view(rad: Any, cards: Sequence[Any]) -> tuple[Any, str]:
    """(radiograph, note): an untagged X-ray gets the shipped view model's answer when that model is sure
    (``engine.predictor.infer_view``), so AP-only models skip lateral films and the reverse."""
    import dataclasses

    from spine_models.engine.predictor import infer_view
    from ui.models import analysis_slot, get_predictor

    with analysis_slot():  # one session's models at a time per server (ui.models.analysis_slot)
        view, note = infer_view(rad, cards, get=get_predictor)
    return (dataclasses.replace(rad, view=view) if view and view != rad.view else rad), note


def run_models(rad: Any, cards: Sequence[Any], *, cam: bool = True) -> tuple[list[Any], dict[str, float]]:
    """Run each model once on the image; returns typed results and wall times in ms (incl. first load).
    Every Predictor takes the same call (``engine.base``: an option of another task is ignored, so a segmenter
    ignores ``cam``), and a network another model already ran on this film answers from the per-film memo."""
    from ui.models import analysis_slot, get_predictor

    results, timings = [], {}
    with analysis_slot():  # one session's models at a time per server: the others wait instead of thrashing
        for card in cards:
            t0 = time.perf_counter()
            res = get_predictor(card).predict(rad, cam=cam)
            timings[card.id] = (time.perf_counter() - t0) * 1000
            results.append(res)
    return results, timings


def compute_shap(card: Any, rad: Any, progress: Callable[[int, int], None] | None = None, max_evals: int = 300) -> Any:
    """A classification result with the SHAP partition map (seconds on CPU; on demand only)."""
    from ui.models import get_predictor

    return get_predictor(card).predict(rad, cam=True, shap=True, shap_evals=max_evals, shap_progress=progress)


def read_mask_upload(data: bytes, name: str, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask upload -> bool HxW at the film's size (nearest-neighbour resize)."""
    import cv2

    from spine_models.io import read_image_bytes

    m = read_image_bytes(data, name, min_size=8).pixels > 0.5
    if m.shape != tuple(shape):
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return m



def save_upload(data: bytes, name: str) -> Path:
    """Write an upload (e.g. a ZIP) to a content-addressed temp path so folder readers can open it."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "spine_lab_uploads" / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(name).name
    if not path.exists():
        path.write_bytes(data)
    return path


@st.cache_data(show_spinner="Generating the phantom dataset…")
def phantom_dataset(kind: str, n: int, seed: int = 11) -> str:
    from spine_models._env import cache_dir

    out = cache_dir() / "datasets" / f"{kind}-n{n}-s{seed}"
    if not (out / "MANIFEST.json").is_file():
        _synth(kind, n, out, seed)
    return str(out)


def default_pair(pool: Sequence[Any]) -> list[str]:
    """Two models that can be compared on one dataset: the first two sharing task, classes (or structures) and view.
    Why: the first two ids of a task can be the real X-ray classifier and the MRI disc model, which fail on any one
    dataset with a labels error."""
    groups: dict[tuple, list[str]] = {}
    for c in pool:
        groups.setdefault((c.task, tuple(c.classes or c.structures or []), c.view), []).append(c.id)
    pair = next((ids[:2] for ids in groups.values() if len(ids) >= 2), None)
    return pair if pair else [c.id for c in pool[:1]]


def training_overlap(card: Any, data_paths: Sequence[str], task: str) -> dict[str, Any] | None:
    """``{"n", "seen", "source"}`` when the chosen data is (part of) what ``card`` was trained and validated on:
    ``seen`` of its ``n`` samples fall in the train or val part of the card's recorded patient split. None when the
    card records no split or its split source does not name the chosen folder(s). Why: scores on a model's own
    training films (161 of 187 Fraiwan films trained or selected the shipped model) look far better than it is."""
    from spine_models.data.adapters import load_dataset
    from spine_models.report.evaluation import test_part

    split = (getattr(card, "data", None) or {}).get("split")
    if not isinstance(split, dict):
        return None
    source = str(split.get("source") or card.trained_on or "")
    names = [Path(p).name for p in data_paths]
    if not names or not any(n and n in source for n in names):
        return None
    ds = load_dataset(list(data_paths), task=task)
    held = {s.id for s in test_part(card, ds).samples}
    return {"n": len(ds.samples), "seen": sum(s.id not in held for s in ds.samples), "source": source}


SMALL_PART_PATIENTS = 30  # a validation or test part with fewer patients gives CIs too wide to read as a figure


def split_sizes(cfg: dict[str, Any]) -> dict[str, int]:
    """Patients per part ({"train", "val", "test"}) that a training job's per-patient split will make, with the
    task's defaults filled in; raises SpineInputError for data that cannot be read. Why: an 8/2/2 split trains and
    reports a figure nobody should read; the Train page says so before the job starts."""
    from spine_models.config import train_config
    from spine_models.data.adapters import load_dataset
    from spine_models.data.splits import split_dataset

    task = cfg["task"]
    full = train_config(task, flags={k: v for k, v in cfg.items() if k not in ("task", "data")}, data=cfg["data"])
    ds = load_dataset(list(full["data"]), task=task)
    parts = split_dataset(ds, ratios=full.get("split", "8:1:1"), seed=int(full.get("seed", 0)),
                          method=str(full.get("split_method", "shuffle")))
    return {k: len({s.patient_id for s in v.samples}) for k, v in parts.items()}


def model_ref(card: Any) -> str:
    """What evaluate_command accepts: a shipped id, or the card file of a finished run (``run:<job>`` ids)."""
    if card.id.startswith("run:"):
        from ui.models import job_store

        path = job_store().card_path(card.id[4:])
        if path is None:
            raise SpineInputError(f"run {card.id[4:]} has no finished model card; pick another model")
        return str(path)
    return card.id


def dataset_hash(paths: Sequence[str], task: str) -> str:
    """Content hash of the dataset (adapters.dataset_fingerprint) — the cache key of evaluations."""
    from spine_models.data.adapters import dataset_fingerprint, load_dataset

    return dataset_fingerprint(load_dataset(list(paths), task=task))


@st.cache_data(show_spinner=False, max_entries=32)
def evaluate_cached(ref: str, weights_sha256: str, data_paths: tuple[str, ...], data_hash: str,
                    n_resamples: int, split: str = "all") -> dict[str, Any]:
    """The SPEC evaluation report of one model on one dataset, cached by (weights sha256, data hash, split);
    ``split="test"``: only the held-out part of the model's own recorded patient split."""
    from spine_models.report.evaluation import evaluate_command

    return evaluate_command(ref, list(data_paths), None, n_resamples=n_resamples, quiet=True, split=split)


def evaluate_watched(on_tick: Callable[[Any], None], *args: Any, poll_s: float = 0.25) -> dict[str, Any]:
    """:func:`evaluate_cached` (same arguments, same cache) with ``on_tick(tick)`` called on the page's own thread
    about every ``poll_s`` with the engines' latest progress (``spine_models._progress.Tick``: loop name, films done
    of total, films/s). Why a worker thread: a cached function may not update page elements made outside it
    (Streamlit replays cached elements), so the evaluation runs beside the page and the page draws its counts."""
    import threading

    from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

    from spine_models._progress import listen

    latest: list[Any] = [None]
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            with listen(lambda tick: latest.__setitem__(0, tick)):
                box["report"] = evaluate_cached(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the page's thread below, which raises it
            box["error"] = exc

    worker = threading.Thread(target=work, name="spine-lab-evaluate", daemon=True)
    add_script_run_ctx(worker, get_script_run_ctx())
    worker.start()
    shown = None
    while worker.is_alive():
        worker.join(poll_s)
        if latest[0] is not None and latest[0] is not shown:
            shown = latest[0]
            on_tick(shown)
    if "error" in box:
        raise box["error"]
    return box["report"]


def report_roc(report: dict[str, Any]) -> tuple[Any, Any, float] | None:
    """Macro one-vs-rest ROC (``spine_models.metrics.classification.macro_roc``) from a classify report's
    per-image probabilities; None without them."""
    from spine_models.metrics.classification import macro_roc

    preds = report.get("predictions") or []
    classes = report["data"]["classes"]
    if not preds or "probs" not in preds[0]:
        return None
    y = np.array([classes.index(p["truth"]) for p in preds])
    P = np.array([[p["probs"].get(c, 0.0) for c in classes] for p in preds])
    return macro_roc(y, P, classes)


def roc_curves(reports: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any, float]]:
    """``{legend name: ROC}`` for the models whose reports have per-image probabilities. Why the name can change: when
    a class has no images the report's macro AUC is undefined (the measures table shows "—") while the curve averages
    the classes that have images; the legend says so instead of contradicting the table."""
    out = {}
    for name, rep in reports.items():
        pts = report_roc(rep)
        if pts is None:
            continue
        undefined = (rep.get("metrics", {}).get("auc_macro") or {}).get("value") is None
        out[f"{name} — classes with images only" if undefined else name] = pts
    return out


def disagreements(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Images where the models' predictions differ: [{"id", "image", "truth", <model>: pred, ...}]; ``image`` is the
    neutral name shown on the page (a dataset's own file stems can be a patient's name)."""
    from spine_models.io.deid import display_name

    by_model = {name: {str(p["id"]): p for p in r.get("predictions") or []} for name, r in reports.items()}
    if not by_model:
        return []
    common = set.intersection(*(set(v) for v in by_model.values()))
    out = []
    for i in sorted(common):
        preds = {name: str(v[i].get("pred", v[i].get("findings"))) for name, v in by_model.items()}
        if len(set(preds.values())) > 1:
            first = next(iter(by_model.values()))[i]
            out.append({"id": i, "image": display_name(i, kind="image"), "truth": first.get("truth"), **preds})
    return out


def image_paths(data_paths: Sequence[str], task: str) -> dict[str, str]:
    """Sample id -> image path (for the disagreement gallery)."""
    from spine_models.data.adapters import load_dataset

    ds = load_dataset(list(data_paths), task=task)
    return {s.id: str(s.path or next(iter(s.views.values()), "")) for s in ds.samples}


def load_study(path: str) -> Any:
    from spine_models.io import read_study

    return read_study(path)


def extract_upload_zip(data: bytes, name: str) -> str:
    """An uploaded study ZIP -> a folder (content-addressed, extracted safely once by the package's one
    ZIP extractor, ``spine_models.io.archive.extract_zip_once``: unsafe members are skipped)."""
    from spine_models.io.archive import extract_zip_once

    zpath = save_upload(data, name)
    return str(extract_zip_once(zpath, zpath.parent / "extracted"))


def mri_selection(folder: str, problems: list[str] | None = None) -> list[Any]:
    """The MRI study's frame choices (mid-sagittal + one axial frame per disc level) with reasons; files the scan
    left out are added to ``problems`` (neutral names)."""
    from spine_models.data.mri import select_frames

    return select_frames(folder, problems=problems)


def frame_pixels(choice: Any) -> np.ndarray:
    """Display pixels (float [0, 1]) of a chosen frame."""
    from spine_models.io import read_image

    rad = read_image(choice.path)
    if rad.volume is not None and rad.volume.shape[0] > choice.frame_index:
        return rad.volume[choice.frame_index]
    return rad.pixels


def sagittal_overlay(choices: Sequence[Any]) -> tuple[np.ndarray, int] | None:
    """(RGB uint8 of the chosen mid-sagittal frame with a line and label where each chosen axial slice cuts it,
    number of lines drawn), or None without a chosen sagittal frame (``data.mri.axial_lines_on_sagittal``)."""
    import cv2

    from spine_models.data.mri import axial_lines_on_sagittal
    from spine_models.results.base import to_rgb_uint8

    sag = next((c for c in choices if c.kind == "sag" and c.available), None)
    if sag is None:
        return None
    rgb = np.ascontiguousarray(to_rgb_uint8(frame_pixels(sag)))
    lines = axial_lines_on_sagittal(sag, [c for c in choices if c.kind == "ax"])
    h, w = rgb.shape[:2]
    t = max(1, round(max(h, w) / 300))
    for ln in lines:
        p0 = tuple(int(round(v)) for v in ln["p0"])
        p1 = tuple(int(round(v)) for v in ln["p1"])
        cv2.line(rgb, p0, p1, (255, 193, 7), t, cv2.LINE_AA)
        y = int(np.clip(p0[1] - 3 * t, 10, h - 2))
        cv2.putText(rgb, f"{ln['level']} (frame {ln['frame']})", (3 * t, y), cv2.FONT_HERSHEY_SIMPLEX, max(0.35, 0.3 * t),
                    (255, 193, 7), max(1, t // 2), cv2.LINE_AA)
    return rgb, len(lines)


def roi_overlay(pixels: np.ndarray) -> np.ndarray:
    """The 13x8 grid with the study's ROI blocks (30+13x+y) tinted; RGB uint8."""
    import cv2

    from spine_models.data.mri import GRID_COLS, GRID_ROWS, roi_mask
    from spine_models.results.base import to_rgb_uint8

    rgb = to_rgb_uint8(pixels).astype(np.float32)
    h, w = pixels.shape
    m = roi_mask(h, w)
    rgb[m] = rgb[m] * 0.6 + np.array([255, 193, 7], np.float32) * 0.4
    out = rgb.astype(np.uint8)
    for i in range(1, GRID_COLS):
        cv2.line(out, (i * w // GRID_COLS, 0), (i * w // GRID_COLS, h - 1), (0, 150, 255), 1)
    for j in range(1, GRID_ROWS):
        cv2.line(out, (0, j * h // GRID_ROWS), (w - 1, j * h // GRID_ROWS), (0, 150, 255), 1)
    return out


def disc_predictions(cards: Sequence[Any], choices: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per disc level (the grading schema's shape): chosen frame, and each model's disc state."""
    from ui.models import get_predictor

    from spine_models.data.mri import DISC_STATES
    from spine_models.models.cards import is_real_validated

    rows = []
    for ch in choices:
        if ch.kind != "ax":
            continue
        row: dict[str, Any] = {"level": ch.level, "frame": ch.frame, "image": ch.name}
        if ch.available:
            px = frame_pixels(ch)
            for card in cards:
                res = get_predictor(card).predict(px, cam=False)
                grade = DISC_STATES.index(res.top_class) if res.top_class in DISC_STATES else None
                row[f"{card.id}"] = f"{res.top_class} ({res.top_prob * 100:.0f}%)" + (f" · grade {grade}" if grade is not None else "")
            row["provenance"] = " · ".join(f"{c.id}: {'validated on real images' if is_real_validated(c) else 'phantom-trained'}"
                                           for c in cards)
        rows.append(row)
    return rows


def disc_cards(cards: Sequence[Any]) -> list[Any]:
    """Models that find (and grade) discs on a sagittal MR slice: graders first, then locators."""
    found = [c for c in cards if c.view == "mri" and c.task == "segment" and "disc" in (c.structures or [])]
    return sorted(found, key=lambda c: (c.arch != "disc_grading", c.id))


def grade_slice(card: Any, pixels: np.ndarray, *, cam: bool = False) -> Any:
    """A DiscGradingResult for one sagittal slice (float pixels) from a disc model, through the hub's cache."""
    from ui.models import get_predictor

    return get_predictor(card).predict(pixels, cam=cam)


def sagittal_frame(choices: Sequence[Any]) -> tuple[np.ndarray, Any] | None:
    """(pixels, choice) of the chosen mid-sagittal frame (the study's rule ⌊n/2⌋+1), or None."""
    sag = next((c for c in choices if c.kind == "sag" and c.available), None)
    return None if sag is None else (frame_pixels(sag), sag)


def report_html(results: Sequence[Any], image: np.ndarray, header: dict[str, Any], cards: Sequence[Any]) -> bytes:
    from spine_models.report.clinician import clinician_html

    return clinician_html(results, image=image, header=header, cards=cards).encode("utf-8")


def report_pdf(results: Sequence[Any], image: np.ndarray, header: dict[str, Any], cards: Sequence[Any]) -> bytes:
    from spine_models.report.clinician import clinician_pdf

    with tempfile.TemporaryDirectory() as d:
        p = clinician_pdf(Path(d) / "report.pdf", results, image=image, header=header, cards=cards)
        return Path(p).read_bytes()
