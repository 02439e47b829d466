"""Model cards carry where they were validated and whose data they learnt from (issue 14 items 5-6; SPEC "Model
cards"): typed fields that old cards load without, the licence order, every shipped card filled and in step with
docs/add_validated_on.py, and the app labelling phantom-only models on an uploaded film and crediting sources."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from spine_models.errors import ConfigError
from spine_models.models.cards import REPO_ROOT, ModelCard, is_real_validated, list_cards, validation_badge
from spine_models.models.provenance import (LICENSE_ORDER, PHANTOM_ONLY_LABEL, SOURCES, headline_metrics,
                                            license_rank, most_restrictive_license, source_entry, sources_in_text,
                                            trained_on_with_licences)

sys.path.insert(0, str(Path(__file__).parent))
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

M = {"value": 3.14, "ci95": [2.5, 3.8]}
REAL = {"data": "aasce-ap", "real": True, "metrics": {"cobb_mae_deg": M}}


def _doc(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "docs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _card_dict(**kw) -> dict:
    base = dict(id="t", task="segment", arch="unet_tiny", view="ap", trained_on="Spine Lab phantom xray-phantom-2",
                weights="weights/t.pt", sha256="", input_size=64, train_command="spine-models train", license="Apache-2.0",
                structures=["vertebra"])
    return {**base, **kw}


# ----------------------------------------------------------------------------------------------- cards
def test_card_without_new_fields_loads_as_phantom_only_and_round_trips(tmp_path: Path) -> None:
    old = _card_dict()  # a card written before validated_on / sources existed
    card = ModelCard.from_dict(old)
    assert card.validated_on == [] and card.sources == []
    assert not is_real_validated(card) and validation_badge(card) == PHANTOM_ONLY_LABEL
    card.to_json(tmp_path / "c.json")
    back = json.loads((tmp_path / "c.json").read_text())
    assert back == {**old, **{k: v for k, v in back.items() if k not in old}} and back["validated_on"] == []
    assert ModelCard.from_json(tmp_path / "c.json") == card


def test_card_with_new_fields_round_trips_and_badges(tmp_path: Path) -> None:
    card = ModelCard.from_dict(_card_dict(validated_on=[REAL, {"data": "phantom x", "real": False, "metrics": {}}],
                                          sources=[source_entry("aasce-ap"), source_entry("phantom xray-phantom-2")]))
    card.to_json(tmp_path / "c.json")
    again = ModelCard.from_json(tmp_path / "c.json")
    assert again == card and again.sources[1]["data"] == "phantom"
    assert is_real_validated(again) and is_real_validated(again.to_dict())
    assert validation_badge(again) == "validated on real films: aasce-ap (Cobb MAE 3.1° [2.5, 3.8])"
    shortcut = {**REAL, "shortcut_warning": True, "metadata_baseline_balanced_accuracy": {"value": 0.9166, "ci95": [0.825, 1.0]}}
    assert validation_badge({"validated_on": [shortcut]}).endswith(
        "shortcut warning: image metadata alone reaches balanced accuracy 0.92 [0.83, 1.00]")
    # a phantom entry alone is still phantom only
    assert validation_badge({"validated_on": [{"data": "phantom", "real": False, "metrics": {}}]}) == PHANTOM_ONLY_LABEL


@pytest.mark.parametrize("bad", [{"validated_on": [{"data": "aasce-ap", "real": "yes", "metrics": {}}]},
                                 {"validated_on": [{"data": "aasce-ap", "real": True}]},
                                 {"sources": [{"data": "aasce-ap", "license": "", "credit": "x"}]}])
def test_malformed_new_fields_are_refused_naming_the_card(bad: dict) -> None:
    with pytest.raises(ConfigError, match="model card 't'"):
        ModelCard.from_dict(_card_dict(**bad))


def test_new_card_from_an_engine_keeps_valid_defaults() -> None:
    """Engines build cards with ModelCard(...) and no provenance: the defaults are valid and phantom only."""
    card = ModelCard(id="run", task="classify", arch="resnet18", view="ap", trained_on="x", weights="/x.pt", sha256="",
                     input_size=64, train_command="", license="x", classes=["a", "b"])
    assert card.to_dict()["validated_on"] == [] and card.to_dict()["sources"] == []
    assert validation_badge(card) == PHANTOM_ONLY_LABEL


# -------------------------------------------------------------------------------------------- licences
def test_most_restrictive_license_follows_the_order() -> None:
    ph, cadma, aasce, fraiwan = (source_entry(n) for n in ("phantom", "cadma-vertebra", "aasce-ap", "fraiwan-ap"))
    assert most_restrictive_license([ph]) == "Apache-2.0"
    assert most_restrictive_license([ph, cadma]) == most_restrictive_license([cadma, ph]) == "CC BY 4.0"
    assert most_restrictive_license([fraiwan, aasce, ph]) == LICENSE_ORDER[0]
    assert license_rank("CC-BY-4.0 (credit …); research use only") == license_rank(LICENSE_ORDER[0])
    assert license_rank("AGPL-3.0 (Ultralytics)") is None
    with pytest.raises(ConfigError, match="GPL-3.0"):
        most_restrictive_license([{"data": "x", "license": "GPL-3.0", "credit": "c"}])
    with pytest.raises(ConfigError, match="no sources"):
        most_restrictive_license([])
    with pytest.raises(ConfigError, match="unknown data source 'mystery'"):
        source_entry("mystery")


def test_source_table_holds_each_credit_line() -> None:
    assert set(SOURCES) == {"aasce-ap", "cadma-vertebra", "fraiwan-ap", "spider-mri", "phantom"}
    need = {"fraiwan-ap": ("doi:10.17632/xkt857dsxk.1", "CC BY 4.0"), "aasce-ap": ("SpineWeb Dataset 16", "BoostNet", "MICCAI 2017"),
            "cadma-vertebra": ("Spine Region — Vertebrae Detection V.1", "CC BY 4.0"),
            "spider-mri": ("van der Graaf", "Scientific Data 11, 264 (2024)", "CC BY 4.0")}
    for name, parts in need.items():
        for p in parts:
            assert p in SOURCES[name].credit, (name, p)
    assert SOURCES["aasce-ap"].license == LICENSE_ORDER[0]
    if SHARED_DATA.is_dir():  # the licence in the table is the one each SOURCE.md states
        for name in ("cadma-vertebra", "fraiwan-ap", "spider-mri"):
            assert "CC BY 4.0" in (SHARED_DATA / name / "SOURCE.md").read_text()
        assert "no open licence" in (SHARED_DATA / "aasce-ap" / "SOURCE.md").read_text().lower()


def test_trained_on_names_sources_once_and_text_finds_them() -> None:
    found = sources_in_text("fraiwan-ap films, initialised from a phantom classifier")
    assert [s["data"] for s in found] == ["fraiwan-ap", "phantom"]
    once = trained_on_with_licences("fraiwan-ap films", found)
    assert once == "fraiwan-ap films; sources with licences: fraiwan-ap (CC BY 4.0), phantom (Apache-2.0)"
    assert trained_on_with_licences(once, found) == once
    figs = headline_metrics({"dice": {"vertebra": M, "pedicle": M}, "cobb_mae_deg": M, "balanced_accuracy": {"value": None}})
    assert list(figs) == ["cobb_mae_deg", "dice_vertebra"]


def test_ship_model_sources_set_the_licence_and_refuse_a_weaker_one() -> None:
    mod = _doc("ship_model")
    card = SimpleNamespace(trained_on="real AP films", license=None, sources=[])
    mod._apply_sources(card, ["phantom", "aasce-ap"])
    assert card.license == LICENSE_ORDER[0] and [s["data"] for s in card.sources] == ["phantom", "aasce-ap"]
    assert "aasce-ap (research-use-only" in card.trained_on
    with pytest.raises(SystemExit, match="less restrictive"):
        mod._apply_sources(SimpleNamespace(trained_on="x", license="Apache-2.0", sources=[]), ["cadma-vertebra"])


def test_ship_model_keep_shipped_carries_post_training_choices(tmp_path: Path) -> None:
    from spine_models.models.cards import ModelCard

    mod = _doc("ship_model")

    def card(arch: str, sha: str, **kw: object) -> ModelCard:
        return ModelCard(id="m", task="segment", arch=arch, view="ap", trained_on="x", weights="m.pt", sha256=sha,
                         input_size=[64, 64], train_command="spine-models train", license="Apache-2.0",
                         structures=["vertebra"], **kw)

    old = card("vertebra_corners", "a" * 64, preprocessing={"patch_side": 2.0, "corner_passes": 6, "level_reader": {"card": "c.json"}},
              limitations=["old limit"], notes=["old note"], runtime={"path": "onnxruntime"})
    old.to_json(tmp_path / "m.json")
    new = card("vertebra_corners", "b" * 64, preprocessing={"patch_side": 2.5}, notes=["run note"])
    mod._keep_shipped(new, tmp_path / "m.json")
    assert new.preprocessing == {"patch_side": 2.5, "corner_passes": 6, "level_reader": {"card": "c.json"}}
    assert new.limitations == ["old limit"] and new.notes == ["old note", "run note"]
    assert new.runtime == {}  # other weights: the shipped runtime record no longer holds
    with pytest.raises(SystemExit, match="is a 'vertebra_corners' model"):
        mod._keep_shipped(card("unet", "c" * 64), tmp_path / "m.json")
    with pytest.raises(SystemExit, match="no shipped card"):
        mod._keep_shipped(new, tmp_path / "missing.json")


# ------------------------------------------------------------------------------------------ shipped cards
SHIPPED = [json.loads(p.read_text()) for p in sorted((REPO_ROOT / "weights").glob("*.json"))]


@pytest.mark.parametrize("card", SHIPPED, ids=[c["id"] for c in SHIPPED])
def test_every_shipped_card_has_sources_and_validated_on_in_step(card: dict) -> None:
    assert card["sources"] and card["validated_on"], f"{card['id']}: run python docs/add_validated_on.py"
    assert _doc("add_validated_on").updated(card) == card, f"{card['id']}: stale; run python docs/add_validated_on.py"
    for s in card["sources"]:
        assert f"{s['data']} ({s['license']})" in card["trained_on"]
    have = license_rank(card["license"])
    assert have is None or have >= license_rank(most_restrictive_license(card["sources"])), card["license"]
    for e in card["validated_on"]:
        assert 1 <= len(e["metrics"]) <= 3
        if e.get("from", "").startswith("docs/") and e["from"].endswith(".json"):
            # copied from a generated docs page's JSON (e.g. docs/real_vertebra_eval.json), never typed
            doc = json.loads((REPO_ROOT / e["from"]).read_text())
            rows = [r for r in doc["results"] if r["card_id"] == card["id"] and r["data"] == e["data"]]
            assert rows and all(rows[0]["metrics"][k] == v for k, v in e["metrics"].items()), (card["id"], e["data"])
            continue
        for k, v in e["metrics"].items():  # copied from the card's own metrics, never typed
            assert v == headline_metrics(card["metrics"])[k]


def test_phantom_only_and_real_models_are_told_apart() -> None:
    by_id = {c["id"]: c for c in SHIPPED}
    if not by_id:
        pytest.skip("no shipped weights")
    for mid, c in by_id.items():
        if any(k in mid for k in ("lat", "implant", "3class")):
            assert not is_real_validated(c) and validation_badge(c) == PHANTOM_ONLY_LABEL, mid
    fraiwan = by_id.get("ap_scoliosis_mobilenet_v2_fraiwan")
    if fraiwan:
        real = [e for e in fraiwan["validated_on"] if e["real"]]
        assert real[0]["data"] == "fraiwan-ap" and real[0]["shortcut_warning"] is True
        assert real[0]["metrics"]["balanced_accuracy"] == fraiwan["metrics"]["balanced_accuracy"]
        assert validation_badge(fraiwan).startswith("validated on real films: fraiwan-ap (balanced accuracy")


def test_models_validated_on_real_ap_films_declare_the_ap_view() -> None:
    """A model validated only on real AP films must not run on a lateral film (its Grad-CAM landed on the ruler)."""
    ap_sources = {"aasce-ap", "fraiwan-ap", "cadma-vertebra"}
    for c in SHIPPED:
        real = {e["data"] for e in c["validated_on"] if e.get("real")}
        if real and real <= ap_sources:
            assert c["view"] == "ap", f"{c['id']}: validated on {sorted(real)} only, so its card's view must be 'ap'"


def test_models_json_includes_provenance(capsys: pytest.CaptureFixture) -> None:
    from spine_models.cli import main

    if not list_cards():
        pytest.skip("no shipped weights")
    assert main(["models", "--json"]) == 0
    arr = json.loads(capsys.readouterr().out)
    assert all(isinstance(m["validated_on"], list) and m["sources"] for m in arr)


def test_models_table_has_a_validated_on_column() -> None:
    mod = _doc("make_models_table")
    assert mod.validated_on({"validated_on": []}) == PHANTOM_ONLY_LABEL
    assert "| validated on |" in mod.render([])


# ---------------------------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app test models; tiny-cls made real-validated with credited sources, the others phantom only."""
    from app_fixtures import make_weights

    folder = make_weights(tmp_path_factory.mktemp("weights"))
    p = folder / "tiny-cls.json"
    card = json.loads(p.read_text())
    card["validated_on"] = [{"data": "fraiwan-ap", "real": True, "metrics": {"balanced_accuracy": {"value": 0.5, "ci95": [0.4, 0.6]}}}]
    card["sources"] = [source_entry("fraiwan-ap"), source_entry("phantom")]
    p.write_text(json.dumps(card))
    return folder


@pytest.fixture()
def app_env(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from app_fixtures import point_app_at

    return point_app_at(weights, tmp_path, monkeypatch)


def _app(page: str | None = None):
    from app_fixtures import new_app

    return new_app(page)


def test_analyse_labels_phantom_only_models_on_an_uploaded_film(app_env: Path) -> None:
    """A phantom-like PNG uploaded as a file is an upload: the real-validated tiny-cls runs by default with its badge;
    each phantom-only model added (tiny-seg, tiny-det) carries the label."""
    from app_fixtures import film, png_bytes, sections

    at = _app()
    at.file_uploader(key="xray_upload").upload("film.png", png_bytes(film()), "image/png").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert set(sections(at)) == {"tiny-cls · classify"}
    next(m for m in at.multiselect if m.label == "Models to run").select("tiny-det").select("tiny-seg").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {"tiny-cls · classify", "tiny-det · detect", "tiny-seg · segment"} <= set(sections(at))
    assert [w.value for w in at.warning].count(PHANTOM_ONLY_LABEL) == 2
    assert any(c.value.startswith("validated on real films: fraiwan-ap (balanced accuracy 0.50") for c in at.caption)


def test_models_page_shows_validation_and_credit_lines(app_env: Path) -> None:
    at = _app("pages/models.py")
    labels = {e.label.split(" — ")[0]: e.label for e in at.expander}
    assert labels["tiny-cls"].endswith("validated on real films") and labels["tiny-seg"].endswith("phantom only")
    md = "\n".join(m.value for m in at.markdown)
    assert "Credits (data sources and licences)" in md and "doi:10.17632/xkt857dsxk.1, CC BY 4.0" in md
    assert "`fraiwan-ap` — CC BY 4.0" in md and "validated on fraiwan-ap (real): balanced accuracy 0.50 [0.40, 0.60]" in md
    assert f"**Validation:** {PHANTOM_ONLY_LABEL}" in md and "the card names no data sources" in md


def test_a_tuning_script_writes_its_choice_into_the_card_and_nothing_else(tmp_path) -> None:
    from spine_models.models.cards import write_preprocessing

    path = tmp_path / "card.json"
    path.write_text(json.dumps({"id": "m", "metrics": {"x": 1}, "preprocessing": {"tta": "hflip", "old": 3}}))
    write_preprocessing(path, {"column_zoom": {"up": 0.3}, "old": None})
    assert json.loads(path.read_text()) == {"id": "m", "metrics": {"x": 1},
                                            "preprocessing": {"tta": "hflip", "column_zoom": {"up": 0.3}}}
    # store_choice: the tuning record written, and the card only with --write
    from spine_models.models.cards import store_choice

    store_choice(tmp_path / "rec.json", {"best": "note"}, None, {"column_gaps": "note"})
    assert json.loads((tmp_path / "rec.json").read_text()) == {"best": "note"}
    assert "column_gaps" not in json.loads(path.read_text())["preprocessing"]
    store_choice(tmp_path / "rec.json", {"best": "note"}, path, {"column_gaps": "note"})
    assert json.loads(path.read_text())["preprocessing"]["column_gaps"] == "note"
