"""The vertebra corner composite (issue 14): patch geometry, corner order under mirroring, Cobb from read corners,
and one tiny training run + prediction through the same calls as every model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spine_models.data.vertebra_patches import (MIRROR_ORDER, body_frame, corner_targets, decode_outputs,
                                                patch_matrix, to_film, to_patch)
from spine_models.engine.base import Film
from spine_models.measure.cobb import endplate_angles

torch = pytest.importorskip("torch")

BODY = np.array([[100.0, 200.0], [160.0, 190.0], [163.0, 232.0], [103.0, 240.0]])  # TL, TR, BR, BL, tilted


def test_patch_round_trip_and_level_patch():
    c, w, tilt = body_frame(BODY)
    m = patch_matrix(c, tilt, 2.0 * w)
    pc = to_patch(BODY, m)
    np.testing.assert_allclose(to_film(pc, m), BODY, atol=1e-9)
    up, low = endplate_angles(pc)
    assert abs((up + low) / 2) < 1e-6  # cut along the body's tilt, the body lies level in its patch
    np.testing.assert_allclose(pc.mean(axis=0), [32, 32], atol=1e-9)  # centred


def test_corner_order_survives_mirroring():
    c, w, tilt = body_frame(BODY)
    plain = to_patch(BODY, patch_matrix(c, tilt + 7, 2.0 * w))
    mirrored = to_patch(BODY, patch_matrix(c, tilt + 7, 2.0 * w, mirror=True), mirror=True)
    # top-left as seen stays top-left: left corners left of right ones, top corners above bottom ones
    assert mirrored[0, 0] < mirrored[1, 0] and mirrored[3, 0] < mirrored[2, 0]
    assert mirrored[0, 1] < mirrored[3, 1] and mirrored[1, 1] < mirrored[2, 1]
    # the mirror image of the plain patch: x reflected, order swapped, endplate angles negated
    np.testing.assert_allclose(mirrored, np.c_[64 - plain[:, 0], plain[:, 1]][MIRROR_ORDER], atol=1e-9)
    np.testing.assert_allclose(endplate_angles(mirrored), -np.asarray(endplate_angles(plain)), atol=1e-9)


def test_targets_decode_back_to_the_corners():
    c, w, tilt = body_frame(BODY)
    pc = to_patch(BODY, patch_matrix(c, tilt - 5, 2.0 * w))
    y = corner_targets(pc)
    back, up, low = decode_outputs(y)
    np.testing.assert_allclose(back, pc, atol=1e-4)
    assert (up, low) == pytest.approx(endplate_angles(pc), abs=1e-4)


def test_cobb_from_read_corners_equals_cobb_from_the_same_corners_as_truth():
    from spine_models.engine.landmarks import cobb_measurement
    from spine_models.measure import cobb_angle

    rng = np.random.default_rng(0)
    bodies = {}
    for i, name in enumerate(["T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3"]):
        a = np.radians(12 * np.sin(i / 2.0))
        cx, cy, hw, hh = 300 + 20 * np.sin(i / 2.0), 200 + 60 * i, 30, 20
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        bodies[name] = (np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]]) @ rot.T + [cx, cy]
                        + rng.normal(0, 0.3, (4, 2)))
    got = cobb_measurement(bodies, (1000, 600), "endplates", None)
    assert got["cobb_deg"] == pytest.approx(cobb_angle(bodies).max_angle, abs=0.01)  # to_dict rounds to 0.01
    short = cobb_measurement(dict(list(bodies.items())[:3]), (1000, 600), "fused", None)
    assert short["cobb_deg"] is None and "Cobb needs" in short["note"]


def test_a_column_with_a_large_gap_is_withheld_or_read_with_a_note_as_the_card_says():
    """``column_gaps``: withhold (the U-Net's rule: "cannot measure") or note (the same reading shown, with a note
    and a flag the finding turns into "reads low")."""
    from spine_models.engine.landmarks import GAP_NOTE, cobb_measurement
    from spine_models.errors import ConfigError
    from spine_models.measure import LEVELS, cobb_read
    from spine_models.report.findings import _cobb_vote

    def column(places: list[int]) -> dict[str, np.ndarray]:  # bodies at these places of T1..L5, on a curve
        out = {}
        for k in places:
            a = np.radians(25 * np.sin(k / 4.0))
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            out[LEVELS[k]] = (np.array([[-30, -20], [30, -20], [30, 20], [-30, 20]]) @ rot.T
                              + [300 + 40 * np.sin(k / 4.0), 100 + 50 * k])
        return out

    bodies = column([0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 15, 16])  # T6-T10 not found
    held = cobb_measurement(bodies, (1000, 600), "body_tilt", None)
    noted = cobb_measurement(bodies, (1000, 600), "body_tilt", None, gaps="note")
    assert not cobb_read(held).ok and "large gaps" in cobb_read(held).reason
    assert cobb_read(noted).ok and noted["cobb_deg"] == held["cobb_deg"] > 20
    assert GAP_NOTE in noted["notes"] and noted["gaps_in_column"] and not noted["warnings"]
    assert "reads low" in _cobb_vote(noted)[1] and "reads low" not in _cobb_vote({**noted, "gaps_in_column": False})[1]
    whole = cobb_measurement(column(list(range(17))), (1000, 600), "body_tilt", None, gaps="note")
    assert cobb_read(whole).ok and "gaps_in_column" not in whole and GAP_NOTE not in (whole.get("notes") or [])
    with pytest.raises(ConfigError, match="withhold, note"):
        cobb_measurement(bodies, (1000, 600), "body_tilt", None, gaps="show")


def test_a_body_read_a_quarter_turn_off_ends_no_curve_when_the_card_bounds_the_step():
    """``max_body_step_deg``: seen on a real film, one lumbar body's corners read at -89 deg between neighbours at
    14 deg gave "Cobb 84.8 deg, L3-L5"; with the anatomical bound that body ends no curve and the reading says so."""
    from spine_models.engine.landmarks import cobb_measurement
    from spine_models.measure import LEVELS, MAX_BODY_STEP_DEG, crooked_bodies

    def body(k: int, deg: float) -> np.ndarray:
        a = np.radians(deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return np.array([[-30, -20], [30, -20], [30, 20], [-30, 20]]) @ rot.T + [300 + 30 * np.sin(k / 4.0), 100 + 50 * k]

    tilts = [12 * np.sin(k / 3.0) for k in range(17)]  # a curve of ~24 deg, steps of a few degrees
    column = {LEVELS[k]: body(k, t) for k, t in enumerate(tilts)}
    assert crooked_bodies(column) == []
    steep = {LEVELS[k]: body(k, 2.2 * k) for k in range(17)}  # 2.2 deg a body: 35 deg over the column, no crooked body
    assert crooked_bodies(steep) == []
    bad = {**column, "L3": body(14, -89.0)}
    assert crooked_bodies(bad) == ["L3"] and crooked_bodies(bad, 120.0) == []
    assert crooked_bodies({**column, "T1": body(0, tilts[0] + 50)}) == ["T1"]  # an end body has one neighbour
    before = cobb_measurement(bad, (1000, 600), "body_tilt", None, min_span=3)
    after = cobb_measurement(bad, (1000, 600), "body_tilt", None, min_span=3, max_step=MAX_BODY_STEP_DEG)
    clean = cobb_measurement(column, (1000, 600), "body_tilt", None, min_span=3)
    assert before["cobb_deg"] > 60  # the misread body makes a curve no spine has
    assert after["cobb_deg"] < 30 and after["bodies_left_out"] == ["L3"] and "L3: read at a tilt" in after["notes"][-1]
    assert all("L3" not in (c["upper_end"], c["lower_end"]) for c in after["curves"])
    assert "bodies_left_out" not in cobb_measurement(column, (1000, 600), "body_tilt", None, max_step=35.0)
    assert abs(after["cobb_deg"] - clean["cobb_deg"]) < 5
    from spine_models.engine.landmarks import _check_degrees
    from spine_models.errors import ConfigError

    for wrong in ("35", -1, 120, True):  # the card key is checked as the predictor reads it: one line
        with pytest.raises(ConfigError, match="max_body_step_deg.*degrees in"):
            _check_degrees(wrong, "model 'm': max_body_step_deg")


@pytest.fixture(scope="module")
def tiny_locator(tmp_path_factory) -> Path:
    """A tiny AP U-Net card with a recorded hash split, as a shipped AP U-Net has."""
    from spine_models.models.cards import ModelCard, save_checkpoint_file
    from spine_models.models.registry import create_model

    tmp = tmp_path_factory.mktemp("vc")
    torch.manual_seed(0)
    net = create_model("unet_tiny", task="segment", num_classes=1)
    sha = save_checkpoint_file(tmp / "loc.pt", arch="unet_tiny", task="segment", state_dict=net.state_dict(),
                               arch_kwargs={"num_classes": 1}, half=False)
    card = ModelCard(id="tiny_ap_unet", task="segment", arch="unet_tiny", view="ap", trained_on="test",
                     weights=str(tmp / "loc.pt"), sha256=sha, input_size=[64, 32], train_command="", license="Apache-2.0",
                     structures=["vertebra"], arch_kwargs={"num_classes": 1}, thresholds={"mask": 0.5},
                     data={"split": {"method": "hash", "ratios": [0.7, 0.1, 0.2], "seed": 0}})
    card.to_json(tmp / "tiny_ap_unet.json")
    return tmp / "tiny_ap_unet.json"


def test_train_one_epoch_and_predict_through_the_engine(tmp_path, tiny_locator):
    from spine_models.cli import main as cli
    from spine_models.engine import predictor_class
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.engine.predictor import load_predictor
    from spine_models.errors import ConfigError
    from spine_models.results import SegmentationResult

    data = tmp_path / "ph"
    assert cli(["synth", "xray-ap", "--n", "10", "--out", str(data), "--seed", "4", "--quiet"]) == 0
    out = tmp_path / "run"
    code = cli(["train", "--task", "segment", "--model", "vertebra_corners", "--data", str(data), "--out", str(out),
                "--epochs", "1", "--batch", "32", "--quiet", "--set", f"locator={tiny_locator}",
                "--set", 'split="7:1:2"', "--set", "split_method=hash", "--set", "corner_width=4"])
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    assert card["arch"] == "vertebra_corners" and card["arch_kwargs"]["locator_sha256"]
    assert card["preprocessing"]["cobb_angles"] == "fused" and card["view"] == "ap"
    hist = json.loads((out / "history.json").read_text())
    assert "val_angle_mae_deg" in (hist[-1] if isinstance(hist, list) else hist["epochs"][-1])
    pred = load_predictor(out / "card.json")
    assert isinstance(pred, VertebraCornerPredictor)
    assert predictor_class(pred.card) is VertebraCornerPredictor
    film = sorted((data / "images").glob("*.png"))[0]
    calls = []
    infer = pred.locator.infer
    pred.locator.infer = lambda x, **kw: calls.append(1) or infer(x, **kw)
    try:
        res = pred.predict(film, cam=True)  # another task's option is ignored, as for every model
        alone = pred.locator.predict(film, cam=True)  # the U-Net on its own, as the page runs it beside the composite
    finally:
        del pred.locator.infer
    assert len(calls) == 1  # the U-Net ran once for both (one shared predictor, one film memo)
    assert isinstance(res, SegmentationResult) and res.model_id == card["id"] and alone.model_id == "tiny_ap_unet"
    json.dumps(res.to_dict())
    # a different split from the locator's would let its held-out patients into training: refused
    with pytest.raises(ConfigError, match="split must be the locator"):
        from spine_models.engine.landmarks import train

        train({"data": str(data), "locator": str(tiny_locator), "split": "8:1:1", "split_method": "hash", "epochs": 1},
              tmp_path / "bad", quiet=True)


def test_a_real_validated_composite_runs_instead_of_its_component_by_default():
    from spine_models.models.cards import ModelCard
    from ui.analysis import default_models

    real = [{"data": "aasce-ap", "real": True, "metrics": {}}]
    base = dict(task="segment", view="ap", trained_on="t", weights="w.pt", sha256="", train_command="", license="x",
                input_size=[64, 32], structures=["vertebra"])
    unet = ModelCard(id="unet", arch="unet_resnet18", validated_on=real, **base)
    corners = ModelCard(id="corners", arch="vertebra_corners", arch_kwargs={"locator": "unet"}, validated_on=real, **base)
    lat = ModelCard(id="lat", arch="unet_mobilenet_v2", **base)
    ids, note = default_models([unet, corners, lat], uploaded=True)
    assert ids == ["corners"] and "2 other model(s)" in note
    assert default_models([unet, lat], uploaded=True)[0] == ["unet"]
    assert default_models([unet, corners, lat], uploaded=False)[0] == ["unet", "corners", "lat"]


def _column_mask(n: int, merged: set[int], *, h: int = 34, w: int = 60, pitch: int = 50, tilt_step: float = 6.0):
    """A binary AP column of ``n`` bodies; each body in ``merged`` is joined to the next by a bridge."""
    import cv2

    m = np.zeros((pitch * (n + 1), 200), np.uint8)
    centres = []
    for i in range(n):
        cx, cy, ang = 100 + 3 * i, pitch * (i + 1), tilt_step * (i - n / 2)
        cv2.fillPoly(m, [cv2.boxPoints(((cx, cy), (w, h), ang)).astype(np.int32)], 1)
        centres.append((cx, cy))
        if i in merged:
            cv2.rectangle(m, (cx - 20, cy), (cx + 20, cy + pitch), 1, -1)
    return m, centres


def test_long_blobs_are_cut_into_their_bodies_and_single_bodies_stay_whole():
    from spine_models.measure import vertebrae_from_mask

    m, centres = _column_mask(12, merged={3, 4, 8})  # bodies 3-4-5 one blob, 8-9 another
    plain = vertebrae_from_mask(m, orientation="moments")
    cut = vertebrae_from_mask(m, orientation="moments", split_long=True)
    assert len(plain) == 9 and len(cut) == 12
    got = sorted(np.asarray(c, float).mean(axis=0)[1] for c in cut.values())
    assert np.max(np.abs(np.array(got) - [c[1] for c in centres])) < 12  # each piece sits on its own body
    m1, _ = _column_mask(12, merged=set())
    assert len(vertebrae_from_mask(m1, orientation="moments", split_long=True)) == 12  # nothing to cut


def test_tidy_bodies_drops_a_duplicate_and_a_fragment_and_names_the_rest_again():
    from spine_models.measure import tidy_bodies

    def quad(cx, cy, w=60.0, h=34.0):
        return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])

    bodies = {f"V{i}": quad(100, 50 * i) for i in range(1, 13)}
    bodies["V20"] = quad(101, 50 * 6 + 6)  # a second patch on body 6
    bodies["V21"] = quad(140, 50 * 9 + 25, 12, 8)  # a speck beside the column
    out = tidy_bodies(bodies)
    assert len(out) == 12 and list(out)[-1] == "L5" and list(out)[0] == "T6"
    assert all(abs(np.asarray(c).mean(axis=0)[0] - 100) < 2 for c in out.values())


def test_two_neighbouring_bodies_make_no_curve_with_min_span_3():
    from spine_models.measure import cobb_from_endplates

    tilts = [0.0, 1.0, -1.0, 0.5, 14.0, -13.0, 0.0, 1.0, -0.5, 0.0]  # one mis-read pair in a straight column
    verts = [(f"V{i}", t, t) for i, t in enumerate(tilts)]
    assert cobb_from_endplates(verts).max_angle > 25
    assert cobb_from_endplates(verts, min_span=3).max_angle < 16
    curve = [(f"V{i}", t, t) for i, t in enumerate([20, 15, 8, 0, -8, -15, -20, -15, -8])]
    assert cobb_from_endplates(curve, min_span=3).max_angle == pytest.approx(40.0)  # a real curve keeps its angle


def test_the_corners_reading_stands_alone_only_with_the_fallback():
    from spine_models.engine.landmarks import _mean_read

    own = {"cobb_deg": 40.0, "curves": [], "reliable": True, "warnings": []}
    failed = {"cobb_deg": None, "note": "7 separate bodies found; a spine film shows about 10-18"}
    assert _mean_read(own, failed)["cobb_deg"] is None
    alone = _mean_read(own, failed, fallback=True)
    assert alone["cobb_deg"] == 40.0 and "failed" in alone["notes"][0]
    assert _mean_read(own, {"cobb_deg": 30.0, "curves": [], "reliable": True, "warnings": []}, fallback=True)["cobb_deg"] == 35.0


def test_the_card_runtime_runs_the_corner_network_on_onnxruntime_as_torch_does(tmp_path, tiny_locator, monkeypatch):
    """A corner card with ``"runtime": {"path": "onnxruntime"}`` runs its corner network through ONNX Runtime
    (engine.runtime), and the corners it reads match torch's (the U-Net follows its own card: torch here)."""
    pytest.importorskip("onnxruntime")
    from spine_models.engine.landmarks import VertebraCornerPredictor, refine_bodies
    from spine_models.models.cards import ModelCard, save_checkpoint_file
    from spine_models.models.registry import create_model

    monkeypatch.setenv("SPINE_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPINE_MODELS_RUNTIME", raising=False)
    torch.manual_seed(1)
    net = create_model("vertebra_corners", task="segment", width=4, patch=64)
    for m in net.modules():  # batch-norm statistics away from the identity, so the exported graph folds real numbers
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    sha = save_checkpoint_file(tmp_path / "vc.pt", arch="vertebra_corners", task="segment", state_dict=net.state_dict(),
                               arch_kwargs={}, half=False)
    loc = ModelCard.from_json(tiny_locator)
    card = ModelCard(id="tiny_corners", task="segment", arch="vertebra_corners", view="ap", trained_on="test",
                     weights=str(tmp_path / "vc.pt"), sha256=sha, input_size=[64, 64], train_command="",
                     license="Apache-2.0", structures=["vertebra"], thresholds={"mask": 0.5},
                     arch_kwargs={"locator": str(tiny_locator), "locator_sha256": loc.sha256, "width": 4, "patch": 64})
    ref = VertebraCornerPredictor(card)
    card.runtime = {"path": "onnxruntime"}
    fast = VertebraCornerPredictor(card)
    assert ref.net.path == "torch" and fast.net.path == "onnxruntime", fast.net.why
    assert fast.locator.net.path == "torch"
    rng = np.random.default_rng(0)
    film = rng.random((600, 300)).astype(np.float32)
    bodies = {f"L{i}": BODY + [0.0, 60.0 * i] for i in range(1, 6)}
    calls = []
    forward = fast.net.forward
    fast.net.forward = lambda x: calls.append(x.shape[0]) or forward(x)
    a = refine_bodies(ref.net, film, bodies)
    b = fast._refine(film, bodies)
    assert calls == [5]  # one ONNX Runtime call, the five bodies' patches as one batch
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-3)  # corners on the film, pixels
    assert np.ptp(np.stack(list(a.values()))[:, :, 0]) > 1  # real corners, not a constant both runtimes agree on


def _shrinking_reader(shrink: float):
    """A stand-in corner network that reads a body's in-patch tilt from the bright region's second moments but
    answers only ``shrink`` of it (the real network's under-correction of a patch cut along the U-Net's level tilt)."""
    import cv2

    def net(x: "torch.Tensor") -> "torch.Tensor":
        outs = []
        for p in x[:, 0].numpy():
            mo = cv2.moments((p > 0.5).astype(np.float32))
            phi = 0.5 * np.degrees(np.arctan2(2 * mo["mu11"], mo["mu20"] - mo["mu02"]))  # the blob's angle, y down
            a = np.radians(shrink * phi)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            pc = np.array([[-12.0, -6.0], [12.0, -6.0], [12.0, 6.0], [-12.0, 6.0]]) @ rot.T + 32
            up, low = endplate_angles(pc)
            outs.append(np.r_[(pc.reshape(-1) - 32) / 32, up / 10, low / 10])
        return torch.tensor(np.array(outs), dtype=torch.float32)

    return net


def test_more_corner_passes_read_a_tilted_body_closer_to_its_tilt_and_keep_its_centre():
    """refine_bodies(passes=N) cuts each patch again along the tilt the previous pass read: with a reader that
    answers only half the tilt it sees, one pass reads ~15 deg of a 30 deg body, four passes ~28 deg; the body's
    centre stays where the U-Net put it (no drift onto a neighbour)."""
    import cv2

    from spine_models.engine.landmarks import refine_bodies

    film = np.zeros((400, 400), np.float32)
    box = cv2.boxPoints(((200.0, 200.0), (80.0, 30.0), 30.0))  # a bright body tilted 30 deg (y down)
    cv2.fillPoly(film, [box.astype(np.int32)], 1.0)
    level = {"T1": np.array([[160.0, 185.0], [240.0, 185.0], [240.0, 215.0], [160.0, 215.0]])}  # the U-Net's guess
    net = _shrinking_reader(0.5)
    tilts = {n: body_frame(refine_bodies(net, film, level, height=400, passes=n)["T1"])[2] for n in (1, 4)}
    assert 12 < abs(tilts[1]) < 18 and 26 < abs(tilts[4]) < 31, tilts
    np.testing.assert_allclose(refine_bodies(net, film, level, height=400, passes=4)["T1"].mean(axis=0), [200, 200],
                               atol=1.0)
    with pytest.raises(ValueError, match="passes=0"):
        refine_bodies(net, film, level, passes=0)


def test_a_card_names_its_corner_passes_or_gets_one_line_saying_what_is_valid():
    from spine_models.engine.landmarks import _check_passes
    from spine_models.errors import ConfigError

    assert _check_passes(None, "x") == 1 and _check_passes(6, "x") == 6
    for bad in (0, 13, 2.0, True, "4"):
        with pytest.raises(ConfigError, match="corner_passes"):
            _check_passes(bad, "model 'm': corner_passes")


def _quad(cx: float, cy: float, w: float = 30.0, h: float = 16.0) -> np.ndarray:
    return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]])


def test_the_column_crop_spans_the_bodies_with_room_above_and_none_when_the_column_fills_the_film():
    """column_crop: a column in the middle third of a head-to-pelvis film is cut out with ``up`` of its height above,
    ``down`` below, at least half as wide as high; a film already cut to the spine gets no second look."""
    from spine_models.engine.landmarks import column_crop

    bodies = {f"V{i}": _quad(200.0, 300.0 + 25.0 * i) for i in range(12)}  # y 292..583, x 185..215
    zoom = {"up": 0.3, "down": 0.1, "min_width": 1.5}
    x0, y0, x1, y1 = column_crop(bodies, (1000, 400), zoom)
    h = 583.0 - 292.0
    assert y0 == int(292 - 0.3 * h) and y1 == int(np.ceil(583 + 0.1 * h))
    assert x1 - x0 >= (y1 - y0) / 2 - 1 and x0 < 185 and x1 > 215  # the U-Net's 2:1 aspect; the bodies inside
    assert abs((x0 + x1) / 2 - 200) <= 1  # centred on the column
    wide = {n: c * [6.0, 1.0] - [1000.0, 0.0] for n, c in bodies.items()}  # a column 180 px wide: min_width rules
    a, _, b, _ = column_crop(wide, (1000, 2000), zoom)
    assert b - a >= 1.5 * 180 - 1
    spine = {f"V{i}": _quad(100.0, 30.0 + 40.0 * i) for i in range(12)}  # a film already cut to the spine
    assert column_crop(spine, (500, 200), zoom) is None  # nothing to gain


def test_a_card_names_its_column_zoom_or_gets_one_line_saying_what_is_valid():
    from spine_models.engine.landmarks import _check_zoom
    from spine_models.errors import ConfigError

    assert _check_zoom(None, "x") is None
    assert _check_zoom({"up": 0.3, "down": 0.1, "min_width": 2}, "x") == {"up": 0.3, "down": 0.1, "min_width": 2.0}
    for bad in ({"up": 0.3}, {"up": 3.0, "down": 0.1, "min_width": 1.5}, {"up": 0.3, "down": 0.1, "min_width": 0.5},
                {"up": True, "down": 0.1, "min_width": 1.5}, 0.3, "yes"):
        with pytest.raises(ConfigError, match="column_zoom.*min_width in"):
            _check_zoom(bad, "model 'm': column_zoom")


def test_the_second_look_maps_its_bodies_masks_and_boxes_back_onto_the_film():
    """The zoom runs the U-Net on the crop; what it finds comes back in film pixels: corners and boxes shifted by
    the crop's corner, masks pasted into the first look's at the crop (the first look's stays outside it)."""
    from spine_models.engine.landmarks import VertebraCornerPredictor
    from spine_models.results import SegmentationResult

    film = np.zeros((400, 200), np.float32)
    first = np.zeros((400, 200), bool)
    first[10:20, 10:20] = True  # a blob outside the crop, kept
    base = SegmentationResult(model_id="u", source="f", image_size=(400, 200), device="cpu", structures=["vertebra"],
                              masks={"vertebra": first}, vertebrae=[])
    seen = {}

    class Locator:
        def predict(self, image, **_):
            seen["shape"] = image.shape
            m = np.zeros(image.shape, bool)
            m[40:56, 20:50] = True
            return SegmentationResult(model_id="u", source="crop", image_size=image.shape, device="cpu",
                                      structures=["vertebra"], masks={"vertebra": m},
                                      vertebrae=[{"name": "T5", "corners": _quad(35.0, 48.0).tolist(),
                                                  "box": [20.0, 40.0, 50.0, 56.0], "score": 0.9}])

    pred = VertebraCornerPredictor.__new__(VertebraCornerPredictor)
    pred.locator, pred.levels = Locator(), None  # no level reader: the bodies keep their names
    pred._bodies = lambda pixels, res: {v["name"]: np.asarray(v["corners"], float) for v in res.vertebrae}
    out, bodies = pred._zoomed(Film(film), base, (50, 100, 150, 300), None)
    assert seen["shape"] == (200, 100)
    np.testing.assert_allclose(bodies["T5"], _quad(85.0, 148.0))
    assert out.vertebrae[0]["box"] == [70.0, 140.0, 100.0, 156.0]
    m = out.masks["vertebra"]
    assert m.shape == (400, 200) and m[10:20, 10:20].all() and m[140:156, 70:100].all() and m.sum() == 100 + 16 * 30

    class Reader:  # a level reader names the second look's bodies on the crop they were read on, then they move
        def name(self, pixels, bodies):
            seen["named_on"] = pixels.shape
            return {"T9": c for c in bodies.values()}

    pred.levels = Reader()
    _, bodies = pred._zoomed(Film(film), base, (50, 100, 150, 300), None)
    assert seen["named_on"] == (200, 100) and list(bodies) == ["T9"]
    np.testing.assert_allclose(bodies["T9"], _quad(85.0, 148.0))


def test_the_vertebra_box_is_the_bodys_extent_or_drawn_about_the_body_by_the_cards_convention():
    """vertebra_box: no convention -> the corners' extent; a convention widens the box about the body's centre along
    its own axis and adds only the given share of what the tilt adds (a vertebra-box dataset's whole vertebra)."""
    import cv2

    from spine_models.engine.landmarks import _check_box, vertebra_box
    from spine_models.errors import ConfigError
    from spine_models.metrics.landmarks import quad_box

    assert vertebra_box(BODY) == quad_box(BODY)
    level = _quad(100.0, 50.0, 40.0, 20.0)
    assert vertebra_box(level, {"width": 1.25, "height": 1.1, "tilt_share": 0.0}) == pytest.approx((75.0, 39.0, 125.0, 61.0))
    tilted = cv2.boxPoints(((100.0, 50.0), (40.0, 20.0), 20.0))[[1, 2, 3, 0]]  # TL, TR, BR, BL of a body tilted 20 deg
    full = vertebra_box(tilted, {"width": 1.0, "height": 1.0, "tilt_share": 1.0})
    np.testing.assert_allclose(full, quad_box(tilted), atol=0.5)  # the tilted body's own extent
    none = vertebra_box(tilted, {"width": 1.0, "height": 1.0, "tilt_share": 0.0})
    assert none[3] - none[1] < full[3] - full[1] and np.mean(none[::2]) == pytest.approx(100.0, abs=0.5)
    assert _check_box({"width": 1.2, "height": 1, "tilt_share": 0.5}, "x") == {"width": 1.2, "height": 1.0, "tilt_share": 0.5}
    for bad in ({"width": 1.2}, {"width": 3.0, "height": 1.0, "tilt_share": 0.5}, {"width": 1.2, "height": 1.0, "tilt_share": 2},
                [1.2, 1.0, 0.5]):
        with pytest.raises(ConfigError, match="vertebra_box.*tilt_share in"):
            _check_box(bad, "model 'm': vertebra_box")
