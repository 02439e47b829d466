"""The learned vertebra level reader (issue 14): decoding levels down the column, labelling found bodies by the
experts', one tiny training run behind a tiny corner model, and a corner card carrying the reader."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from spine_models.measure.cobb import COLUMN_LEVELS, decode_levels

torch = pytest.importorskip("torch")

K = len(COLUMN_LEVELS)


def _flat(n: int) -> np.ndarray:
    return np.log(np.full((n, K), 1.0 / K))


def test_levels_rise_down_the_column_and_a_distinctive_body_names_the_rest():
    lp = _flat(5)
    lp[4, COLUMN_LEVELS.index("S1")] = 0.0  # the lowest body is surely the sacrum
    names = [COLUMN_LEVELS[i] for i in decode_levels(lp)]
    assert names == ["L2", "L3", "L4", "L5", "S1"]
    lp = _flat(3)
    lp[0, COLUMN_LEVELS.index("C7")] = 0.0  # a C7 on top: T1, T2 follow, not the count from the bottom
    assert [COLUMN_LEVELS[i] for i in decode_levels(lp)] == ["C7", "T1", "T2"]
    # each body's own best level would break the order; the decode never does
    lp = _flat(3)
    lp[0, 5], lp[1, 3], lp[2, 9] = 0.0, -0.1, 0.0
    out = decode_levels(lp)
    assert all(b > a for a, b in zip(out, out[1:]))


def test_a_missed_body_is_skipped_only_when_the_evidence_outweighs_the_skip_cost():
    lp = np.log(np.full((2, K), 1e-3))
    lp[0, 1], lp[1, 4] = 0.0, 0.0  # T1 then T4: two levels between them missed
    assert decode_levels(lp, skip_log_prob=-1.0) == [1, 4]
    assert decode_levels(lp, skip_log_prob=-20.0) != [1, 4]
    with pytest.raises(ValueError, match="cannot take"):
        decode_levels(_flat(K + 1))
    with pytest.raises(ValueError, match="skip_log_prob"):
        decode_levels(_flat(2), skip_log_prob=1.0)


def _quad(cx: float, cy: float, w: float = 40.0, h: float = 24.0) -> np.ndarray:
    return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])


def test_found_bodies_take_the_experts_levels_and_the_ones_beyond_the_column_c7_and_the_sacrum():
    from spine_models.data.vertebra_patches import extended_column
    from spine_models.engine.levels import label_bodies, level_accuracy

    truth = np.stack([_quad(100, 100 + 40 * i) for i in range(17)])  # T1..L5
    levels = list(range(1, 18))
    found = np.stack([_quad(100, 60)] + [_quad(101, 100 + 40 * i) for i in range(17) if i != 8] + [_quad(100, 780)])
    lab = label_bodies(found, truth, levels)
    assert lab[0] == COLUMN_LEVELS.index("C7") and lab[-1] == COLUMN_LEVELS.index("S1")
    assert list(lab[1:9]) == list(range(1, 9)) and list(lab[9:17]) == list(range(10, 18))
    assert label_bodies(np.stack([_quad(300, 420)]), truth, levels).tolist() == [-1]  # beside the column: unknown
    ext = extended_column(truth)
    assert len(ext) == 19 and ext[0][:, 1].mean() == pytest.approx(60) and ext[-1][:, 1].mean() == pytest.approx(780)
    # the accuracy counts the experts' T1..L5 bodies only; C7 and the sacrum are not theirs
    assert level_accuracy([0, 2, 3], np.array([0, 1, 3])) == pytest.approx(0.5)


def test_the_reader_renames_bodies_top_to_bottom_and_leaves_too_many_alone():
    from spine_models.engine.landmarks import LevelReader

    class Fixed(torch.nn.Module):  # sure of T11, T12, L1 for the 1st, 2nd, 3rd body (its patch and its mirror, one batch)
        def forward(self, x):
            n = x.shape[0]
            out = torch.full((n, K), -10.0)
            out[torch.arange(n), torch.arange(n) % (n // 2) + COLUMN_LEVELS.index("T11")] = 10.0
            return out

    reader = LevelReader.__new__(LevelReader)
    reader.net, reader.device, reader.classes = Fixed(), "cpu", list(COLUMN_LEVELS)
    reader.side, reader.size, reader.height, reader.skip, reader.tta = 7.0, 32, 256, -3.0, "hflip"
    pixels = np.random.default_rng(0).random((512, 256)).astype(np.float32)
    bodies = {"V2": _quad(128, 200), "V1": _quad(128, 150), "V3": _quad(128, 250)}
    named = reader.name(pixels, bodies)
    assert list(named) == ["T11", "T12", "L1"]
    np.testing.assert_allclose(named["T11"], bodies["V1"])  # the highest body got the first level
    many = {f"V{i}": _quad(128, 10 + 25 * i, 10, 6) for i in range(K + 1)}
    assert reader.name(pixels, many) is many


def test_nineteen_named_bodies_with_c7_and_the_sacrum_are_one_column_and_measured():
    from spine_models.engine.landmarks import cobb_measurement

    names = list(COLUMN_LEVELS)
    bodies = {}
    for i, n in enumerate(names):
        a = np.radians(15 * np.sin(i / 3.0))
        c = _quad(300 + 30 * np.sin(i / 3.0), 100 + 45 * i)
        cen = c.mean(axis=0)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        bodies[n] = (c - cen) @ rot.T + cen
    m = cobb_measurement(bodies, (1000, 600), "body_tilt", None)
    assert m["reliable"] and m["cobb_deg"] is not None
    ends = {c["upper_end"] for c in m["curves"]} | {c["lower_end"] for c in m["curves"]}
    assert not ends & {"C7", "S1"}  # neither is an end vertebra of a measured curve


@pytest.fixture(scope="module")
def tiny_corner_run(tmp_path_factory) -> tuple[Path, Path]:
    """(phantom data, a tiny corner model's run folder behind a tiny AP U-Net)."""
    from spine_models.cli import main as cli
    from spine_models.models.cards import ModelCard, save_checkpoint_file
    from spine_models.models.registry import create_model

    tmp = tmp_path_factory.mktemp("lv")
    torch.manual_seed(0)
    net = create_model("unet_tiny", task="segment", num_classes=1)
    sha = save_checkpoint_file(tmp / "loc.pt", arch="unet_tiny", task="segment", state_dict=net.state_dict(),
                               arch_kwargs={"num_classes": 1}, half=False)
    ModelCard(id="tiny_ap_unet", task="segment", arch="unet_tiny", view="ap", trained_on="test", weights=str(tmp / "loc.pt"),
              sha256=sha, input_size=[64, 32], train_command="", license="Apache-2.0", structures=["vertebra"],
              arch_kwargs={"num_classes": 1}, thresholds={"mask": 0.5},
              data={"split": {"method": "hash", "ratios": [0.7, 0.1, 0.2], "seed": 0}}).to_json(tmp / "loc.json")
    data = tmp / "ph"
    assert cli(["synth", "xray-ap", "--n", "10", "--out", str(data), "--seed", "4", "--quiet"]) == 0
    run = tmp / "corners"
    assert cli(["train", "--task", "segment", "--model", "vertebra_corners", "--data", str(data), "--out", str(run),
                "--epochs", "1", "--batch", "32", "--quiet", "--set", f"locator={tmp / 'loc.json'}",
                "--set", 'split="7:1:2"', "--set", "split_method=hash", "--set", "corner_width=4"]) == 0
    return data, run


def test_train_one_epoch_and_a_corner_card_carries_the_reader(tmp_path, tiny_corner_run):
    from spine_models.cli import main as cli
    from spine_models.engine import levels, predictor_class
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.errors import ConfigError, WeightsNotAvailableError
    from spine_models.models.cards import ModelCard
    from spine_models.results import SegmentationResult

    data, corners = tiny_corner_run
    out = tmp_path / "levels"
    assert cli(["train", "--task", "segment", "--model", "vertebra_levels", "--data", str(data), "--out", str(out),
                "--epochs", "1", "--batch", "16", "--quiet", "--set", f"locator={corners}", "--set", 'split="7:1:2"',
                "--set", "split_method=hash", "--set", "level_width=4", "--set", "level_patch=32"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["arch"] == "vertebra_levels" and card["classes"] == list(COLUMN_LEVELS)
    assert card["arch_kwargs"]["locator_sha256"] and card["preprocessing"]["level_patch"] == 32
    hist = json.loads((out / "history.json").read_text())
    assert "val_level_accuracy" in (hist[-1] if isinstance(hist, list) else hist["epochs"][-1])
    reader_card = ModelCard.from_json(out / "card.json")
    assert predictor_class(reader_card) is levels.Predictor
    film = sorted((data / "images").glob("*.png"))[0]
    res = levels.Predictor(reader_card).predict(film)
    assert isinstance(res, SegmentationResult) and res.model_id == card["id"]
    assert all(v["name"] in COLUMN_LEVELS or v["name"].startswith("V") for v in res.vertebrae)
    json.dumps(res.to_dict())
    # a corner card carrying the reader by path and sha256; a retrained reader under the same path is refused
    corner = ModelCard.from_json(corners / "card.json")
    ref = {"card": str(out / "card.json"), "sha256": reader_card.sha256}
    pred = VertebraCornerPredictor(ModelCard.from_dict({**corner.to_dict(), "preprocessing": {
        **corner.preprocessing, "level_reader": ref}}))
    assert pred.levels is not None and pred.levels.classes == list(COLUMN_LEVELS)
    assert pred.levels.provenance() == {"by": "level reader", "model": card["id"], "held_out_accuracy": None}
    # the reader card's runtime puts its network on ONNX Runtime; the levels it reads are torch's
    if importlib.util.find_spec("onnxruntime") is not None:
        from spine_models.engine.landmarks import LevelReader

        from PIL import Image

        pixels = np.asarray(Image.open(film).convert("L"), np.float32) / 255
        body = np.array([[100, 200], [160, 200], [160, 240], [100, 240]], float)
        bodies = np.stack([body + [0, 50 * i] for i in range(5)])
        fast = LevelReader(dataclasses.replace(reader_card, runtime={"path": "onnxruntime"}))
        slow = LevelReader(reader_card)
        assert (slow.net.path, fast.net.path) == ("torch", "onnxruntime"), fast.net.why
        np.testing.assert_allclose(fast.log_probs(pixels, bodies), slow.log_probs(pixels, bodies), atol=1e-4)
    with pytest.raises(WeightsNotAvailableError, match="retrain"):
        VertebraCornerPredictor(ModelCard.from_dict({**corner.to_dict(), "preprocessing": {
            **corner.preprocessing, "level_reader": {**ref, "sha256": "0" * 64}}}))
    with pytest.raises(WeightsNotAvailableError, match="no level reader card"):
        VertebraCornerPredictor(ModelCard.from_dict({**corner.to_dict(), "preprocessing": {
            **corner.preprocessing, "level_reader": {**ref, "card": str(tmp_path / "gone.json")}}}))
    with pytest.raises(ConfigError, match="level_reader"):
        VertebraCornerPredictor(ModelCard.from_dict({**corner.to_dict(), "preprocessing": {
            **corner.preprocessing, "level_reader": "reader.json"}}))
    # the reader behind something that is no corner model: one line saying what it needs
    with pytest.raises(ConfigError, match="vertebra_corners"):
        levels.train({"data": str(data), "locator": str(corners.parent / "loc.json"), "epochs": 1}, tmp_path / "bad",
                     quiet=True)


def test_the_finding_says_where_the_curves_level_names_come_from():
    from spine_models.report.findings import _cobb_vote

    cobb = {"cobb_deg": 32.0, "max_angle": 32.0, "reliable": True, "warnings": [],
            "curves": [{"name": "main thoracic", "angle_deg": 32.0, "upper_end": "T6", "lower_end": "T12", "apex": "T9"}]}
    counted = _cobb_vote(cobb)[1]
    assert "T6–T12, apex T9" in counted and "counted up from the lowest body" in counted
    read = _cobb_vote({**cobb, "level_names": {"by": "level reader", "model": "r", "held_out_accuracy": 0.641}})[1]
    assert "named by a learned reader, right for 64% of bodies on held-out films" in read and "counted" not in read
