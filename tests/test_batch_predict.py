"""Batch robustness and batch inference (issues 17 and 18).

A measurement that raises is that film's failed measurement (never a finding), not the end of the result; a batch
reports a bad file or a failing model per film and always writes its JSON and CSV; ``BasePredictor.predict_batch``
gives the same results as one ``predict`` per film with fewer network calls; ``predict DIR --out x.csv`` reads a
folder through the DataLoader (workers too) and writes one row per film and model, in file order.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from spine_models.cli import main  # noqa: E402
from spine_models.engine.predictor import load_predictor  # noqa: E402
from spine_models.measure import failed_measurement, measured, public_measurement, slip_read  # noqa: E402
from spine_models.models.cards import ModelCard, save_checkpoint_file, sha256_file  # noqa: E402
from spine_models.models.registry import create_model  # noqa: E402
from spine_models.results import ClassificationResult  # noqa: E402

ZERO_LENGTH = "slip_percent: the lower vertebra's superior endplate has zero length"


def _tiny_card(tmp: Path, id_: str, task: str, arch: str, kw: dict, **fields) -> Path:
    torch.manual_seed(0)
    state = create_model(arch, task=task, **kw).state_dict()
    sha = save_checkpoint_file(tmp / f"{id_}.pt", arch=arch, task=task, state_dict=state, arch_kwargs=kw, half=False)
    card = ModelCard(id=id_, task=task, arch=arch, view=fields.pop("view", "any"), trained_on="test",
                     weights=str(tmp / f"{id_}.pt"), sha256=sha, train_command="", license="test", arch_kwargs=kw, **fields)
    card.to_json(tmp / f"{id_}.json")
    return tmp / f"{id_}.json"


def _films(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.random((80 + 8 * i, 40 + 4 * (i % 3))).astype(np.float32) for i in range(n)]


# ------------------------------------------------------------------------------------ failed measurements
def test_a_raising_measurement_is_a_failed_measurement_never_a_finding():
    def boom():
        raise ValueError(ZERO_LENGTH)

    d = measured("slip", boom)
    assert d["slip_percent"] is None and d["failed"] is True and d["reliable"] is False
    r = slip_read(d)
    assert not r.ok and r.text.startswith("cannot measure — measurement failed (ValueError") and "zero length" in r.text
    assert public_measurement("slip", d)["status"] == r.text
    assert measured("slip", lambda: {"slip_percent": 3.0})["slip_percent"] == 3.0  # a read that works is untouched
    with pytest.raises(ValueError, match="kind"):
        failed_measurement("angle", ValueError("x"))


def test_measure_masks_keeps_a_failed_slip_per_film(monkeypatch):
    import spine_models.measure as measure
    from spine_models.engine.segment import measure_masks

    vert = np.zeros((64, 32), bool)
    vert[10:20, 8:24] = vert[30:40, 8:24] = True

    def zero_length(*_a, **_k):
        raise ValueError(ZERO_LENGTH)

    monkeypatch.setattr(measure, "slip_from_mask", zero_length)
    out = measure_masks({"vertebra": vert, "disc_height": np.zeros_like(vert)}, "lat")
    assert out["slip"]["failed"] is True and "zero length" in out["slip"]["note"]
    import spine_models.engine.segment as seg

    monkeypatch.setattr(seg, "cobb_from_mask", zero_length)
    out = measure_masks({"vertebra": vert, "pedicle": np.zeros_like(vert)}, "ap")
    assert out["cobb"]["cobb_deg"] is None and out["cobb"]["failed"] is True


# ------------------------------------------------------------------------------------ predict_batch
@pytest.fixture(scope="module")
def tiny_cards(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("batch")
    return {
        "classify": _tiny_card(tmp, "tiny_cls", "classify", "spinenet_tiny", {"num_classes": 2, "in_chans": 1},
                               input_size=32, classes=["normal", "scoliosis"], thresholds={"binary": 0.5}),
        "segment": _tiny_card(tmp, "tiny_seg", "segment", "unet_tiny", {"classes": 1}, input_size=[64, 32],
                              structures=["vertebra"], view="ap", preprocessing={"tta": "hflip"}),
    }


@pytest.mark.parametrize("kind", ["classify", "segment"])
def test_predict_batch_equals_predict_with_fewer_forward_calls(tiny_cards, kind):
    from spine_models.engine.film_memo import film_memo

    pred = load_predictor(tiny_cards[kind], device="cpu")
    calls: list[int] = []
    pred.model.register_forward_hook(lambda _m, inp, _o: calls.append(int(inp[0].shape[0])))
    films = _films(5)
    film_memo.clear()
    one = [pred.predict(f, cam=False) for f in films]
    n_single = len(calls)
    film_memo.clear()
    calls.clear()
    many = pred.predict_batch(films, batch_size=8 if kind == "classify" else 6, cam=False)
    assert len(calls) < n_single and sum(calls) == sum(1 if kind == "classify" else 2 for _ in films)
    for a, b in zip(one, many):
        da, db = a.to_dict(), b.to_dict()
        da.pop("elapsed_ms", None), db.pop("elapsed_ms", None)
        if kind == "classify":
            assert np.allclose(a.probs, b.probs, atol=1e-5)
        else:
            assert all(np.array_equal(a.masks[s], b.masks[s]) for s in a.masks)
        assert da.keys() == db.keys()


# ------------------------------------------------------------------------------------ the predict command
@pytest.fixture
def weights_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINE_MODELS_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    return tmp_path


def _toy_card(root: Path, model_id: str = "toy-ap") -> None:
    w = root / "weights" / f"{model_id}.pt"
    w.write_bytes(b"toy " + model_id.encode())
    ModelCard(id=model_id, task="classify", arch="resnet18", view="ap", trained_on="toy", weights=f"weights/{w.name}",
              sha256=sha256_file(w), input_size=64, train_command="", license="test",
              classes=["normal", "scoliosis"]).to_json(root / "weights" / f"{model_id}.json")


def _folder(root: Path, n: int) -> Path:
    import cv2

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h = 70 if i == 2 else 64  # film_02 is the one the fake model fails on
        cv2.imwrite(str(root / f"film_{i:02d}.png"), (rng.random((h, 48)) * 255).astype(np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "notes.txt").write_text("not an image: skipped")
    return root


class _Fake:
    """A model that answers every film but raises on film_02 (70 rows), as slip_percent did."""

    def __init__(self, card):
        self.card = card

    def predict(self, image):
        if image.pixels.shape[0] == 70:
            raise ValueError(ZERO_LENGTH)
        return ClassificationResult(model_id=self.card.id, classes=["normal", "scoliosis"], probs=[0.3, 0.7])


@pytest.mark.parametrize("workers", [0, 2])
def test_predict_folder_reports_each_bad_item_and_always_writes_json_and_csv(weights_env, tmp_path, capsys,
                                                                             monkeypatch, workers):
    import spine_models.commands.predict as pred

    _toy_card(weights_env)
    monkeypatch.setattr(pred, "get_predictor", lambda card, device=None: _Fake(card))
    folder = _folder(tmp_path / "films", 5)
    out_csv = tmp_path / "results.csv"
    code = main(["predict", str(folder), "--json", "--out", str(out_csv), "--workers", str(workers), "--batch-size", "2",
                 "--quiet"])
    cap = capsys.readouterr()
    assert code == 1  # an internal error on one film: exit 1, but every film is in the JSON and the CSV
    entries = json.loads(cap.out)
    assert [e["index"] for e in entries] == list(range(1, 7))  # file order: broken.png first, then film_00..04
    assert "error" in entries[0] and "broken" not in cap.out  # the bad file: one entry, under its neutral id
    failed = [e for e in entries if "error" in e]
    assert len(failed) == 2 and "ValueError" in failed[1]["error"]
    assert all(e["results"][0]["prediction"] == "scoliosis" for e in entries if "error" not in e)
    rows = list(csv.DictReader(out_csv.open()))
    assert [int(r["index"]) for r in rows] == list(range(1, 7))
    assert sum(1 for r in rows if r["error"]) == 2 and {r["model"] for r in rows if not r["error"]} == {"toy-ap"}
    assert "2 of 6 file(s) failed" in cap.err and "broken.png" in cap.err


def test_predict_out_json_and_bad_out(weights_env, tmp_path, capsys, monkeypatch):
    import spine_models.commands.predict as pred

    _toy_card(weights_env)
    monkeypatch.setattr(pred, "get_predictor", lambda card, device=None: _Fake(card))
    folder = _folder(tmp_path / "films", 2)
    assert main(["predict", str(folder / "film_00.png"), str(folder / "film_01.png"), "--out", str(tmp_path / "r.json"),
                 "--quiet"]) == 0
    assert [e["index"] for e in json.loads((tmp_path / "r.json").read_text())] == [1, 2]
    assert main(["predict", str(folder), "--out", str(tmp_path / "r.xlsx")]) == 2
    assert "use a .csv or .json" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty)]) == 2
    assert "holds no image file" in capsys.readouterr().err


def test_app_runs_one_sessions_models_at_a_time_by_default(monkeypatch):
    """ui.models.analysis_slot: sessions beyond SPINE_MODELS_MAX_ANALYSES wait their turn (bench/load_app.py)."""
    pytest.importorskip("streamlit")
    from ui.models import analysis_slot, max_analyses

    monkeypatch.delenv("SPINE_MODELS_MAX_ANALYSES", raising=False)
    assert max_analyses() == 1
    slot = analysis_slot()
    assert slot is analysis_slot()  # one per server
    with slot:
        assert not slot.acquire(blocking=False)  # a second session waits
    monkeypatch.setenv("SPINE_MODELS_MAX_ANALYSES", "3")
    assert max_analyses() == 3
    monkeypatch.setenv("SPINE_MODELS_MAX_ANALYSES", "0")
    with pytest.raises(ValueError, match="SPINE_MODELS_MAX_ANALYSES"):
        max_analyses()


def test_leaving_the_analysis_slot_gives_freed_memory_back(monkeypatch):
    """The server's RSS stayed at every analysis' high-water mark (glibc keeps freed pages mapped): leaving the slot
    runs malloc_trim (ui.models.give_back_memory), after the slot is free for the next session."""
    pytest.importorskip("streamlit")
    import ui.models as models

    monkeypatch.delenv("SPINE_MODELS_MAX_ANALYSES", raising=False)
    slot = models.analysis_slot()
    calls = []
    monkeypatch.setattr(models, "give_back_memory", lambda: calls.append(slot.acquire(blocking=False)) or True)
    with slot:
        assert calls == []
    assert calls == [True]  # the slot was already released when memory was given back
    slot.release()
    import sys

    if sys.platform.startswith("linux"):
        monkeypatch.undo()
        assert models.give_back_memory() is True  # glibc: malloc_trim exists and ran


def test_a_batch_run_gives_freed_memory_back_after_each_batch(weights_env, tmp_path, capsys, monkeypatch):
    """glibc keeps the pages of the largest film a process has read: `predict DIR` hands them back after every batch
    (spine_models._memory) in the main process, and the reader does after reading each batch (workers 0: the same
    process, so both count here)."""
    import spine_models._memory as memory
    import spine_models.commands.predict as pred

    _toy_card(weights_env)
    monkeypatch.setattr(pred, "get_predictor", lambda card, device=None: _Fake(card))
    calls: list[str] = []
    monkeypatch.setattr(pred, "give_back_memory", lambda: calls.append("main") or True)
    monkeypatch.setattr(memory, "give_back_memory", lambda: calls.append("reader") or True)
    folder = _folder(tmp_path / "films", 5)  # 6 files with broken.png: 3 batches of 2
    main(["predict", str(folder), "--json", "--workers", "0", "--batch-size", "2", "--quiet"])
    capsys.readouterr()
    assert calls.count("main") == 3 and calls.count("reader") == 3


def test_default_readers_leave_the_cores_to_the_networks_on_cpu(monkeypatch):
    """Readers only where cores are free of the networks' threads (bench/bench_batch.py measured them slower and
    holding more memory on a CPU torch already fills); a GPU run keeps up to 2; a handful of files never pays for one."""
    import torch

    from spine_models.data import film_loader

    monkeypatch.setattr(film_loader.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert film_loader.default_workers(100, "cpu") == 0
    assert film_loader.default_workers(100, "cuda:0") == 2
    assert film_loader.default_workers(5, "cuda:0") == 0
    monkeypatch.setattr(film_loader.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    assert film_loader.default_workers(100, "cpu") == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert film_loader.default_workers(100, "cpu") == 2
