"""docs/reproduce_cards.py's table (issue 13): every shipped card has an entry, and every card value it compares
exists in that card. No data, no models: reads weights/*.json only."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reproduce_cards", REPO / "docs" / "reproduce_cards.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(mod)
    return mod


RC = _script()
SHIPPED = sorted(p.stem for p in (REPO / "weights").glob("*.json"))


def test_table_covers_every_shipped_card() -> None:
    tied = {c.card for c in RC.CHECKS if isinstance(c, RC.Check)}
    listed = {c.card for c in RC.CHECKS}
    assert SHIPPED, "no weights/*.json found"
    assert listed == set(SHIPPED), f"missing: {sorted(set(SHIPPED) - listed)}, unknown: {sorted(listed - set(SHIPPED))}"
    untied = sorted(listed - tied)
    assert untied == [], f"cards not tied to a data command: {untied}"


@pytest.mark.parametrize("check", [c for c in RC.CHECKS if isinstance(c, RC.Check)],
                         ids=lambda c: f"{c.card}-{c.runner}")
def test_every_compared_key_exists_in_its_card(check) -> None:
    card = json.loads((REPO / "weights" / f"{check.card}.json").read_text())
    assert check.keys, f"{check.card}: no keys to compare"
    for key in RC.card_keys(check):
        RC.lookup(card, key)  # raises KeyError naming the missing part
    assert check.runner in ("evaluate", "real_vertebra_eval") and check.split in ("all", "test")
    for item in check.data:
        if isinstance(item, RC.Synth):
            assert item.kind in ("xray-ap", "xray-lat", "mri-lumbar") and item.n > 0
        else:
            assert item.startswith("../shared/data/")


def test_lookup_and_compare() -> None:
    obj = {"metrics": {"a": {"value": 0.5, "ci95": [0.4, 0.6]}},
           "validated_on": [{"data": "x, y", "metrics": {"k": 1}}, {"data": "z", "metrics": {"k": 2}}]}
    assert RC.lookup(obj, "validated_on[data=x, y].metrics.k") == 1
    with pytest.raises(KeyError):
        RC.lookup(obj, "metrics.b")
    assert RC.compare(obj["metrics"]["a"], {"value": 0.5 + 1e-9, "ci95": [0.4, 0.6]})[0]
    assert not RC.compare(obj["metrics"]["a"], {"value": 0.5, "ci95": [0.4, 0.61]})[0]
    assert RC.compare([[1, 2], [3, 4]], [[1, 2], [3, 4]]) == (True, 0.0)
    assert not RC.compare([[1, 2]], [[1, 3]])[0] and not RC.compare(True, False)[0]
