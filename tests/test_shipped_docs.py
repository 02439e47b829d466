"""Generated docs stay in sync with the shipped cards, and the weights stay inside their budget."""
from __future__ import annotations

import importlib.util
import json

import pytest

from spine_models.models.cards import REPO_ROOT

WEIGHTS_BUDGET_MB = 100  # the brief: weights/ under 100 MB in all
FILE_LIMIT_MB = 50  # issue 4: each shipped file <= 50 MB


def _table_module():
    spec = importlib.util.spec_from_file_location("make_models_table", REPO_ROOT / "docs" / "make_models_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cards() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((REPO_ROOT / "weights").glob("*.json"))]


def test_shipped_models_page_matches_the_cards():
    """docs/shipped_models.md is generated from weights/*.json: a card changed without re-running
    `python docs/make_models_table.py` fails here instead of leaving stale figures on the page."""
    cards = _cards()
    if not cards:
        pytest.skip("no shipped weights")
    page = (REPO_ROOT / "docs" / "shipped_models.md").read_text()
    assert page == _table_module().render(cards)


def test_headline_reads_metrics_and_flags_shortcuts():
    mod = _table_module()
    card = {"task": "classify", "metrics": {"balanced_accuracy": {"value": 0.5, "ci95": [0.4, 0.6]}},
            "audit": {"shortcut_warning": True, "metadata_baseline": {"balanced_accuracy": {"value": 0.9, "ci95": [0.8, 1.0]}}}}
    lines = mod.headline(card)
    assert lines[0] == "balanced accuracy 0.500 [0.40, 0.60]"
    assert "shortcut warning" in lines[-1] and "0.900" in lines[-1]
    seg = mod.headline({"task": "segment", "metrics": {"dice": {"vertebra": {"value": 0.9, "ci95": [0.8, 0.95]}},
                                                        "slip_mae_percent": {"value": 10.0, "ci95": [8.0, 12.0]}}})
    assert seg == ["Dice vertebra 0.900 [0.80, 0.95]", "slip MAE 10.00 [8.00, 12.00] %"]


def test_weights_within_budget_and_each_card_names_an_existing_file():
    total = 0.0
    for c in _cards():
        f = REPO_ROOT / c["weights"]
        assert f.is_file(), f"{c['id']}: card names {c['weights']}, which is missing"
        mb = f.stat().st_size / 1e6
        assert mb <= FILE_LIMIT_MB, f"{f.name} is {mb:.1f} MB"
        total += mb
    assert total < WEIGHTS_BUDGET_MB, f"weights/ holds {total:.1f} MB"


def test_ship_model_inference_setting_updates_card_and_command_and_refuses_others():
    spec = importlib.util.spec_from_file_location("ship_model", REPO_ROOT / "docs" / "ship_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from types import SimpleNamespace

    card = SimpleNamespace(task="segment", preprocessing={"resize_mode": "stretch"}, notes=[],
                           train_command="spine-models train --task segment --data D --out R")
    mod._set_inference(card, ["tta=hflip"])
    assert card.preprocessing == {"resize_mode": "stretch", "tta": "hflip"}
    assert card.train_command.endswith(" --set tta=hflip") and "weights are unchanged" in card.notes[-1]
    mod._set_inference(card, ["tta=none"])  # switching back replaces the flag instead of adding a second
    assert card.train_command.count("--set tta=") == 1 and card.train_command.endswith("--set tta=none")
    for bad in ("tta=vflip", "threshold=0.3"):
        with pytest.raises(SystemExit, match="tta=none|hflip"):
            mod._set_inference(card, [bad])
    with pytest.raises(SystemExit, match="classify model"):
        mod._set_inference(SimpleNamespace(task="classify", preprocessing={}, notes=[], train_command=""), ["tta=hflip"])


def test_compare_corner_runs_pairs_each_film_with_the_shipped_reading():
    import sys

    sys.path.insert(0, str(REPO_ROOT / "docs"))
    spec = importlib.util.spec_from_file_location("compare_corner_runs", REPO_ROOT / "docs" / "compare_corner_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shipped = {"errors": [1.0, -5.0, 2.0], "truth": [10.0, 50.0, 45.0], "patients": ["a", "b", "c"],
               "tilts": [(1.0, 2.0), (20.0, 17.0), (-5.0, -4.0)]}
    other = {**shipped, "errors": [0.0, -9.0, 2.0]}  # better on the mild film, 4 deg lower on a severe one
    rows = [{}, {}]
    mod._paired(rows, [shipped, other], 200)
    assert rows[0]["read_out"]["cobb_abs_error_minus_shipped_deg"] == {"value": 0.0, "ci95": [0.0, 0.0]}
    got = rows[1]["read_out"]
    assert got["cobb_abs_error_minus_shipped_deg"]["value"] == pytest.approx(1.0)  # (-1 + 4 + 0) / 3
    assert got["severe_n"] == 2 and got["severe_bias_deg"] == pytest.approx(-3.5)
    assert got["bodies_matched"] == 3 and got["body_tilt_mae_deg"] == pytest.approx(5 / 3, abs=1e-3)
    assert got["cobb_median_abs_error_deg"] == 2.0
