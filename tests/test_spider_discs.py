"""Real sagittal MRI discs (issue 15): the disc-grading layout, level mapping, disc reads in any orientation, the
grader's crop, the grading metrics, and tiny models trained one step on a made folder of that layout."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from spine_models.data.disc_crops import disc_crop, upright_turns
from spine_models.data.spider import IVD_LEVELS, dihedral, level_of_ivd, load_spider, recover_disc_boxes
from spine_models.errors import DatasetError
from spine_models.measure.discs import discs_from_probs
from spine_models.metrics.discs import finding_measures, pfirrmann_measures

SPIDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "spider-mri"


def _slice(rng: np.random.Generator, n_discs: int = 6, size: int = 160) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """An upright made slice (cranial up): textured background, a column of bright bodies with dark discs.
    Returns (uint8 image, disc boxes top to bottom)."""
    import cv2

    img = (rng.random((size, size)) * 60 + 40).astype(np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    boxes = []
    y = 12
    for i in range(n_discs):
        cv2.rectangle(img, (60, y), (100, y + 14), int(170 + 10 * (i % 3)), -1)  # body
        cv2.ellipse(img, (80, y + 19), (18, 3), 0, 0, 360, int(30 + 15 * i), -1)  # disc
        cv2.circle(img, (70 + 3 * i, y + 5), 2, 250, -1)  # a mark so each crop is unique
        boxes.append((56, y + 12, 104, y + 27))
        y += 22
    return img, boxes


def _crop_png(img: np.ndarray, box: tuple[int, int, int, int], path: Path) -> None:
    """A crop as the upstream writes it: the box cut from the slice, a red frame drawn into its border."""
    import cv2

    x1, y1, x2, y2 = box
    c = cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_GRAY2BGR)
    cv2.rectangle(c, (0, 0), (c.shape[1] - 1, c.shape[0] - 1), (0, 0, 255), 2)
    cv2.imwrite(str(path), c)


@pytest.fixture()
def spider_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A made disc-grading folder: 6 patients x (t1, t2); PNGs stored upside down (as most upstream renderings),
    crops numbered from the top of the upright slice; gradings numbered from the bottom (1 = L5-S1)."""
    import cv2

    monkeypatch.setenv("SPINE_MODELS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "spider"
    (root / "images").mkdir(parents=True)
    (root / "discs").mkdir()
    rng = np.random.default_rng(0)
    grows, srows = [], []
    for p in range(1, 7):
        for seq in ("t1", "t2"):
            up, boxes = _slice(rng)
            stored = up[::-1].copy()  # the PNG is the upright slice flipped top to bottom
            cv2.imwrite(str(root / "images" / f"{p}_{seq}.png"), stored)
            for k, b in enumerate(boxes, start=1):
                _crop_png(up, b, root / "discs" / f"{p}_{seq}_disc_{k}.png")
            srows.append({"new_file_name": f"{p}_{seq}", "num_discs": len(boxes)})
        for ivd in range(1, 7):
            grows.append({"Patient": p, "IVD label": ivd, "Modic": 0, "UP endplate": 0, "LOW endplate": 0,
                          "Spondylolisthesis": 0, "Disc herniation": int(ivd == 2 and p % 2 == 0),
                          "Disc narrowing": int(ivd <= 2), "Disc bulging": int(ivd <= 3), "Pfirrman grade": 1 + (ivd + p) % 5})
    for name, rows in (("gradings.csv", grows), ("series.csv", srows)):
        with (root / name).open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return root


def test_ivd_labels_count_from_the_sacrum():
    assert level_of_ivd(1) == "L5-S1" and level_of_ivd(2) == "L4-L5" and level_of_ivd(5) == "L1-L2"
    assert level_of_ivd(6) == "T12-L1"
    with pytest.raises(DatasetError, match="1 \\(L5-S1\\)"):
        level_of_ivd(12)


def test_boxes_recovered_on_a_flipped_slice_with_levels_from_the_bottom(spider_folder: Path):
    found = recover_disc_boxes(spider_folder)
    s = found["1_t2"]
    assert s.orientation == 6  # top-to-bottom flip
    assert s.levels_certain and len(s.boxes) == 6
    # IVD 1 (L5-S1) is the lowest disc of the upright slice (crop 6: rows 134-149), i.e. the top one of the stored PNG
    assert s.boxes[1] == (56.0, 160 - 149.0, 104.0, 160 - 134.0)
    ys = {ivd: (b[1] + b[3]) / 2 for ivd, b in s.boxes.items()}
    assert sorted(ys, key=ys.get) == [1, 2, 3, 4, 5, 6]
    assert min(s.scores.values()) > 0.99


def test_dataset_has_level_boxes_and_patient_gradings(spider_folder: Path):
    ds = load_spider(spider_folder)
    assert len(ds) == 12 and len(ds.patients) == 6
    s = next(x for x in ds.samples if x.id == "2_t1")
    labels = [b.label for b in s.boxes]
    assert "disc L5-S1" in labels and "disc T12-L1" in labels
    assert s.meta["gradings"]["L4-L5"]["herniation"] == 1  # patient 2, IVD 2
    assert s.view == "mri_sag"


def _column_probs(n: int = 6, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Disc probability maps of an upright column (L5-S1 lowest) and the caudal channel (three lowest discs)."""
    import cv2

    disc = np.zeros((size, size), np.float32)
    l5 = np.zeros_like(disc)
    for i in range(n):
        cy = 20 + 30 * i
        cv2.ellipse(disc, (100, cy), (16, 4), 0, 0, 360, 1.0, -1)
        if i >= n - 3:
            cv2.ellipse(l5, (100, cy), (16, 4), 0, 0, 360, 1.0, -1)
    return disc, l5


@pytest.mark.parametrize("k", range(8))
def test_levels_follow_the_sacrum_under_every_flip_and_rotation(k: int):
    """Flips keep the level order: L5-S1 is the extreme disc of the caudal end in every orientation."""
    disc, l5 = _column_probs()
    read = discs_from_probs(dihedral(disc, k), dihedral(l5, k))
    assert read.levels_reliable
    levels = [d.level for d in read.discs]
    assert levels == ["L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2", "T12-L1"]
    # the named L5-S1 is the lowest disc of the upright column, wherever the flip put it
    mark = np.zeros_like(disc)
    mark[20 + 30 * 5, 100] = 1.0
    cx, cy = (int(round(v)) for v in read.discs[0].centre)
    ys, xs = np.nonzero(dihedral(mark, k))
    assert abs(cx - xs[0]) <= 1 and abs(cy - ys[0]) <= 1


def test_no_level_names_without_the_anchor():
    disc, l5 = _column_probs()
    read = discs_from_probs(disc, np.zeros_like(l5))
    assert not read.levels_reliable and all(d.level is None for d in read.discs) and "lower lumbar" in read.note
    read = discs_from_probs(disc, disc)  # every disc looks caudal: the ends cannot be told apart
    assert not read.levels_reliable and "alike" in read.note
    read = discs_from_probs(np.zeros_like(disc), None)
    assert read.discs == [] and "no disc" in read.note


def test_disc_box_recovered_from_its_core_ellipse():
    import cv2

    from spine_models.data.vertebra_targets import disc_mask

    truth = (60.0, 40.0, 140.0, 70.0)
    m = disc_mask((120, 200), [truth])
    read = discs_from_probs(m, None)
    (d,) = read.discs
    assert np.allclose(d.box, truth, atol=3.0)
    rot = np.ascontiguousarray(np.rot90(m))  # a turned slice: the box turns too
    (d2,) = discs_from_probs(rot, None).discs
    assert abs((d2.box[2] - d2.box[0]) - 30) <= 3 and abs((d2.box[3] - d2.box[1]) - 80) <= 3
    del cv2


def test_crop_is_upright_whatever_the_slice_orientation():
    img = np.zeros((100, 100), np.float32)
    img[40:45, 30:70] = 1.0  # a bright bar above the box centre: the "cranial" side
    img[45:60, 30:70] = 0.5
    box = (30, 40, 70, 60)
    ref = disc_crop(img, box, (0.0, -1.0))
    for k in range(1, 4):
        t = np.ascontiguousarray(np.rot90(img, k))
        # the cranial direction (0, -1) seen in the turned slice
        dx, dy = 0.0, -1.0
        for _ in range(k):
            dx, dy = dy, -dx
        h, w = img.shape
        ys, xs = np.indices(img.shape)
        ty, tx = np.rot90(ys, k), np.rot90(xs, k)
        sel = (ys >= 40) & (ys < 60) & (xs >= 30) & (xs < 70)
        rows, cols = np.nonzero(np.rot90(sel, k))
        tbox = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert upright_turns((dx, dy)) == (4 - k) % 4
        np.testing.assert_allclose(disc_crop(t, tbox, (dx, dy)), ref, atol=1e-5)
        del ty, tx, h, w


def test_grading_metrics_on_known_values():
    t = np.array([0, 1, 2, 3, 4, 2])
    prob = np.eye(5)[[0, 1, 3, 3, 2, 2]]
    m = pfirrmann_measures(t, prob, groups=["a", "a", "b", "b", "c", "c"], n_resamples=50)
    assert m["pfirrmann_accuracy"]["value"] == pytest.approx(4 / 6)
    assert m["pfirrmann_within1"]["value"] == pytest.approx(5 / 6)
    assert m["pfirrmann_confusion_matrix"][2][3] == 1 and sum(map(sum, m["pfirrmann_confusion_matrix"])) == 6
    f = finding_measures([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9], 0.65, n_resamples=50)
    assert f["auc"]["value"] == pytest.approx(1.0)
    assert f["sensitivity"]["value"] == pytest.approx(1.0) and f["specificity"]["value"] == pytest.approx(1.0)
    f = finding_measures([0, 0, 1, 1], [0.1, 0.7, 0.6, 0.9], 0.65, n_resamples=50)
    assert f["auc"]["value"] == pytest.approx(0.75) and f["sensitivity"]["value"] == pytest.approx(0.5)


@pytest.mark.slow
@pytest.mark.parametrize("members", [1, 2])
def test_tiny_locator_and_grader_train_and_evaluate(spider_folder: Path, tmp_path: Path, members: int):
    """One-step locator + one-epoch grader (one, or an ensemble of two) on the made folder; evaluate reports the
    disc-grading keys with CIs."""
    from spine_models.config import train_config
    from spine_models.engine import segment
    from spine_models.report.evaluation import evaluate_command

    loc_cfg = train_config("segment", flags={"model": "unet_tiny", "epochs": 1, "batch": 4}, data=[str(spider_folder)],
                           out=str(tmp_path / "loc"), sets=["view=mri_sag", "structures=[disc,disc_caudal]", "imgsz=[64,64]",
                                                           "split_method=hash", "split=\"4:1:1\"", "max_steps=1",
                                                           "augment=mri-sag", "leakage_check=false"])
    card_path = segment.train(loc_cfg, tmp_path / "loc", quiet=True)
    card = json.loads(Path(card_path).read_text())
    assert card["view"] == "mri" and card["structures"] == ["disc", "disc_caudal"]
    gr_cfg = train_config("segment", flags={"model": "disc_grading", "epochs": 1, "batch": 4}, data=[str(spider_folder)],
                          out=str(tmp_path / "gr"), sets=[f"locator={tmp_path / 'loc'}", "split_method=hash",
                                                          "split=\"4:1:1\"", "augment=mri-disc", "grader_width=4",
                                                          "grader_loss=sord", "grader_margin=[0.15,0.6]",
                                                          f"grader_members={members}",
                                                          *(["grader_findings=[herniation,bulging,narrowing,modic]"]
                                                            if members > 1 else [])])
    from spine_models.engine import task_module

    gcard = task_module("segment", arch="disc_grading").train(gr_cfg, tmp_path / "gr", quiet=True)
    g = json.loads(Path(gcard).read_text())
    named = {"herniation", "bulging", "narrowing"} | ({"modic"} if members > 1 else set())
    assert g["arch"] == "disc_grading" and set(g["thresholds"]) == named and set(g["arch_kwargs"]["findings"]) == named
    assert g["preprocessing"]["crop_margin"] == [0.15, 0.6]  # the Predictor cuts with what training cut
    assert g["arch_kwargs"].get("members", 1) == members
    assert g["sources"] == [] or g["sources"][0]["data"] in ("spider-mri",)
    rep = evaluate_command(tmp_path / "gr", [str(spider_folder)], n_resamples=20, quiet=True, audit=False)
    m = rep["metrics"]
    assert "disc_ap50" in m and set(m["disc_ap50"]) == {"value", "ci95"}
    assert "dice" in m and "disc" in m["dice"]
    if m["n_discs_graded"]:  # a one-step locator may name no disc: the keys appear once discs are graded
        for k in ("pfirrmann_accuracy", "pfirrmann_within1"):
            assert set(m[k]) == {"value", "ci95"}
        assert len(m["pfirrmann_confusion_matrix"]) == 5
        assert set(m["per_class"]) == named


def test_real_spider_boxes_and_levels():
    """On the real folder: crops are exact cuts (score 1.0) for nearly every series, levels count from the sacrum."""
    if not (SPIDER / "gradings.csv").is_file():
        pytest.skip(f"../shared/data/spider-mri not present ({SPIDER}); real-data test skipped")
    found = recover_disc_boxes(SPIDER)
    exact = [s for s in found.values() if s.scores and min(s.scores.values()) > 0.99]
    assert len(exact) >= 0.8 * len(found)
    assert set(IVD_LEVELS.values()) >= {f"disc {lv}"[5:] for s in load_spider(SPIDER).samples for b in s.boxes
                                        for lv in [b.label[5:]] if b.label.startswith("disc ")}


def test_mri_page_grades_an_uploaded_sagittal_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A single sagittal PNG on the MRI page: the disc model runs (the grader first), its slice overlay is shown, and
    a phantom-only model says so on the real upload."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from app_fixtures import make_disc_weights, new_app, png_bytes, point_app_at

    point_app_at(make_disc_weights(tmp_path / "w"), tmp_path, monkeypatch)
    img, _ = _slice(np.random.default_rng(1))
    at = new_app("pages/mri.py")
    at.radio(key="mri_example").set_value("Sagittal slice (PNG/JPG/DICOM)").run()
    assert not at.exception
    at.file_uploader(key="mri_slice").upload("Doe_Jane_sag.png", png_bytes(img), "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="mri_disc_model").value == "tiny-disc-grader"  # the grader before the bare locator
    shown = " ".join(w.value for w in at.warning)
    assert "phantom-trained — not validated on real images" in shown
    assert "Doe" not in " ".join(str(x.value) for x in at.caption)


def test_grader_probabilities_and_gradcam_on_crops(tmp_path: Path):
    """Grades are distributions (Pfirrmann sums to 1, findings in [0, 1]); Grad-CAM targets the predicted grade and has
    the crop's shape; mirror averaging makes a crop and its mirror image grade the same."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from app_fixtures import make_disc_weights

    from spine_models.engine.predictor import load_predictor

    w = make_disc_weights(tmp_path / "w")
    pred = load_predictor(w / "tiny-disc-grader.json")
    crops = np.random.default_rng(0).random((3, 64, 128)).astype(np.float32)
    pf, fi = pred.grade_crops(crops)
    assert pf.shape == (3, 5) and np.allclose(pf.sum(1), 1, atol=1e-5) and fi.shape == (3, 3)
    assert ((fi >= 0) & (fi <= 1)).all()
    pf_m, fi_m = pred.grade_crops(crops[:, :, ::-1].copy())
    np.testing.assert_allclose(pf, pf_m, atol=1e-5)
    cams = pred._cams(crops, pf.argmax(1))
    assert len(cams) == 3 and cams[0].shape == (64, 128) and np.isfinite(cams[0]).all()


def test_ordinal_soft_targets_respect_the_grade_order():
    """SORD targets peak at the true grade and fall off with distance (a 3-for-4 costs less than a 1-for-5); the
    ``sord`` loss ranks a neighbouring miss below a far miss, ``ce`` does not; an unknown loss names the valid ones."""
    import torch

    from spine_models.engine.discs import _loss, ordinal_soft_targets
    from spine_models.errors import ConfigError

    q = ordinal_soft_targets(torch.tensor([3, 0]))
    assert torch.allclose(q.sum(1), torch.ones(2)) and int(q[0].argmax()) == 3 and int(q[1].argmax()) == 0
    assert q[0, 2] == pytest.approx(float(q[0, 4])) and q[0, 2] > q[0, 1] > q[0, 0]
    y = torch.tensor([[3.0, 0, 0, 0]])
    near = torch.tensor([[0, 0, 0, 5.0, 0, 0, 0, 0]])  # the true class (index 3, grade 4)
    off1 = torch.tensor([[0, 0, 5.0, 0, 0, 0, 0, 0]])  # one grade off
    off3 = torch.tensor([[5.0, 0, 0, 0, 0, 0, 0, 0]])  # three grades off
    pw = torch.ones(3)
    sord, ce = _loss(FINDINGS3, pw, "sord"), _loss(FINDINGS3, pw, "ce")
    assert sord(near, y) < sord(off1, y) < sord(off3, y)
    assert ce(off1, y) == pytest.approx(float(ce(off3, y)))
    with pytest.raises(ConfigError, match="ce, sord"):
        _loss(FINDINGS3, pw, "focal")


FINDINGS3 = ("herniation", "bulging", "narrowing")


def test_grader_findings_are_the_folders_gradings_and_the_table_shows_each(tmp_path: Path):
    """``grader_findings`` takes the folder's binary gradings only (a bad or repeated name: one line with the valid
    ones); targets carry every gradable finding (Modic: any type); the per-level table has a column per finding."""
    from spine_models.data.spider import GRADABLE_FINDINGS, grading_targets
    from spine_models.engine.discs import DiscGraderTrainer
    from spine_models.errors import ConfigError
    from spine_models.results.discs import DiscGrade, DiscGradingResult

    t = grading_targets({"pfirrmann": 4, "herniation": 0, "bulging": 1, "narrowing": 0, "modic": 2, "up_endplate": 1,
                         "low_endplate": 0, "spondylolisthesis": 0})
    assert t["pfirrmann"] == 3 and t["modic"] == 1 and t["up_endplate"] == 1 and set(GRADABLE_FINDINGS) <= set(t)
    for bad in (["herniation", "osteophytes"], ["modic", "modic"]):
        with pytest.raises(ConfigError, match="grader_findings.*spondylolisthesis"):
            DiscGraderTrainer({"locator": "x", "data": str(tmp_path), "grader_findings": bad}, tmp_path / "run", quiet=True)
    d = DiscGrade(level="L4-L5", box=(0, 0, 10, 5), score=0.9, pfirrmann=3, pfirrmann_probs=[0.1, 0.2, 0.5, 0.1, 0.1],
                  findings={"herniation": 0.1, "bulging": 0.7, "narrowing": 0.2, "modic": 0.8},
                  calls={"herniation": False, "bulging": True, "narrowing": False, "modic": True})
    row = DiscGradingResult(model_id="m", source="s", image_size=(20, 20), device="cpu", structures=["disc"], masks={},
                            measurements={}, discs=[d], levels_reliable=True).table()[0]
    assert row["Modic change"] == "yes (0.80)" and row["bulging"] == "yes (0.70)"


def test_grader_ensemble_averages_independent_members(tmp_path: Path):
    """``grader_members`` > 1: in training each member's logits come out stacked and each gets its own loss (the
    sum); in eval the output is the members' mean, which the Predictor grades and Grad-CAMs over every member;
    ``members=1`` keeps the single grader's state-dict layout (shipped cards load unchanged)."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from app_fixtures import make_disc_weights

    from spine_models.engine.discs import _loss
    from spine_models.engine.predictor import load_predictor
    from spine_models.models.grading import DiscGrader, DiscGraderEnsemble
    from spine_models.models.registry import create_model

    single = create_model("disc_grading", task="segment", findings=FINDINGS3, width=4)
    assert isinstance(single, DiscGrader) and not any(k.startswith("members.") for k in single.state_dict())
    torch.manual_seed(0)
    ens = create_model("disc_grading", task="segment", findings=FINDINGS3, width=4, members=3)
    assert isinstance(ens, DiscGraderEnsemble)
    x = torch.rand(2, 1, 64, 128)
    ens.eval()
    each = torch.stack([m(x) for m in ens.members])
    assert not torch.allclose(each[0], each[1])  # members start from their own initialisations
    torch.testing.assert_close(ens(x), each.mean(0))
    ens.train()
    for m in ens.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        out = ens(x)
        assert out.shape == (3, 2, 8)
        y = torch.tensor([[3.0, 1, 0, 1], [0.0, 0, 1, 0]])
        f = _loss(FINDINGS3, torch.ones(3), "sord")
        assert float(f(out, y)) == pytest.approx(sum(float(f(o, y)) for o in out), rel=1e-5)
    with pytest.raises(ValueError, match="members"):
        DiscGraderEnsemble(FINDINGS3, width=4, members=1)

    w = make_disc_weights(tmp_path / "w", members=2)
    pred = load_predictor(w / "tiny-disc-grader.json")
    assert isinstance(pred.model, DiscGraderEnsemble) and len(pred.model.members) == 2
    crops = np.random.default_rng(1).random((2, 64, 128)).astype(np.float32)
    pf, fi = pred.grade_crops(crops)
    assert pf.shape == (2, 5) and np.allclose(pf.sum(1), 1, atol=1e-5) and fi.shape == (2, 3)
    cams = pred._cams(crops, pf.argmax(1))
    assert cams[0].shape == (64, 128) and np.isfinite(cams[0]).all() and 0 <= cams[0].min() <= cams[0].max() <= 1


def test_predict_json_calls_a_slice_read_with_a_disc_model_mri(tmp_path: Path, monkeypatch, capsys):
    """``spine-models predict slice.png --model <disc grader> --json``: the PNG has no modality, the named model is an
    MRI model, so the entry's kind is "mri" and its discs carry every finding the card names."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from app_fixtures import make_disc_weights

    from spine_models.cli import main
    from spine_models.commands.predict import image_kind

    w = make_disc_weights(tmp_path / "w")
    monkeypatch.setenv("SPINE_MODELS_WEIGHTS", str(w))
    png = tmp_path / "slice.png"
    import cv2

    cv2.imwrite(str(png), (np.random.default_rng(0).random((96, 64)) * 255).astype(np.uint8))
    assert main(["predict", str(png), "--model", "tiny-disc-grader", "--json", "--quiet"]) == 0
    entry = json.loads(capsys.readouterr().out)[0]
    assert entry["kind"] == "mri" and entry["results"][0]["type"] == "DiscGradingResult"
    from types import SimpleNamespace

    xray_card = SimpleNamespace(view="ap")
    assert image_kind(SimpleNamespace(modality=None), [xray_card]) == "xray"
    assert image_kind(SimpleNamespace(modality="CR"), [SimpleNamespace(view="mri")]) == "xray"
    assert image_kind(SimpleNamespace(modality="MR")) == "mri"


def test_grader_crops_with_the_cards_margin(tmp_path: Path):
    """The Predictor cuts crops with the margin its card records (training's ``grader_margin``); a card without one
    keeps the old default; a bad margin is refused with the key named."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from app_fixtures import make_disc_weights

    from spine_models.data.disc_crops import CROP_MARGIN
    from spine_models.engine.discs import _pair
    from spine_models.engine.predictor import load_predictor
    from spine_models.errors import ConfigError

    w = make_disc_weights(tmp_path / "w")
    assert load_predictor(w / "tiny-disc-grader.json").margin == CROP_MARGIN
    card = json.loads((w / "tiny-disc-grader.json").read_text())
    card["preprocessing"] = {**(card.get("preprocessing") or {}), "crop_margin": [0.15, 0.6]}
    (w / "wide.json").write_text(json.dumps({**card, "id": "wide"}))
    assert load_predictor(w / "wide.json").margin == (0.15, 0.6)
    assert _pair([0.15, 0.6], "grader_margin") == (0.15, 0.6)
    with pytest.raises(ConfigError, match="grader_margin"):
        _pair("wide", "grader_margin")
    with pytest.raises(ConfigError, match=">= 0"):
        _pair([-0.1, 0.2], "grader_margin")
