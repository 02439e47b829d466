"""Typed config tables (issue 13): one place checks each key, a typo is answered with the closest key, and no
engine reads a key its task's defaults file lacks."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from spine_models.config import CHOICES, MINIMUM, RUN_KEYS, check_cfg, defaults, load_config
from spine_models.errors import ConfigError

ENGINE = Path(__file__).resolve().parents[1] / "spine_models" / "engine"
# engine module -> the task whose defaults file its cfg comes from
ENGINE_TASKS = {"classify": "classify", "composite": "classify", "detect": "detect", "segment": "segment", "discs": "segment"}


def cfg_keys_read(path: Path) -> dict[str, int]:
    """Every literal key read as ``cfg[...]`` or ``cfg.get(...)`` in a module -> its first line."""
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "cfg" \
                and isinstance(node.slice, ast.Constant):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "cfg" and node.args \
                and isinstance(node.args[0], ast.Constant):
            key = node.args[0].value
        if isinstance(key, str):
            out.setdefault(key, node.lineno)
    return out


@pytest.mark.parametrize("module", sorted(ENGINE_TASKS))
def test_no_engine_reads_a_key_its_defaults_file_lacks(module: str) -> None:
    task = ENGINE_TASKS[module]
    known = set(defaults(task)) | set(RUN_KEYS)
    read = cfg_keys_read(ENGINE / f"{module}.py")
    assert read, f"engine/{module}.py reads no cfg keys: the scan is broken"
    missing = {k: line for k, line in read.items() if k not in known}
    assert not missing, f"engine/{module}.py reads keys that spine_models/cfg/{task}.yaml lacks: {missing}"


def test_the_scan_finds_a_key_the_defaults_lack(tmp_path: Path) -> None:
    p = tmp_path / "m.py"
    p.write_text("def f(cfg):\n    return cfg['epochs'], cfg.get('no_such_key')\n")
    assert cfg_keys_read(p) == {"epochs": 2, "no_such_key": 2}


def test_every_table_key_is_a_default_key_and_each_default_passes() -> None:
    for table in (CHOICES, MINIMUM):
        for task, keys in table.items():
            d = defaults(task)
            assert set(keys) <= set(d), f"{task}: table keys {set(keys) - set(d)} are not in cfg/{task}.yaml"
            check_cfg(task, d)
    for task in ("classify", "detect", "segment"):
        load_config(task)


def test_a_typo_names_the_closest_key() -> None:
    with pytest.raises(ConfigError, match="unknown key 'epoch'; did you mean 'epochs'"):
        load_config("classify", {"epoch": 3})
    with pytest.raises(ConfigError, match="unknown key 'treshold'; did you mean 'threshold'"):
        load_config("segment", {"treshold": 0.4})
    with pytest.raises(ConfigError, match=r"unknown key 'zzz'; valid keys"):
        load_config("detect", {"zzz": 1})


@pytest.mark.parametrize("task, key, bad, valid", [
    ("classify", "optimizer", "rmsprop", "adam, adamw, sgd"),
    ("classify", "mode", "partial", "frozen, finetune"),
    ("classify", "view", "oblique", "ap, lat, mri, any"),
    ("segment", "tta", "vflip", "none, hflip"),
])
def test_a_value_outside_its_choices_is_named_with_the_valid_ones(task, key, bad, valid) -> None:
    with pytest.raises(ConfigError, match=f"{task} config: {key}='{bad}'; valid: {valid}"):
        load_config(task, {key: bad})


def test_minimum_and_types_are_checked() -> None:
    with pytest.raises(ConfigError, match="epochs=0 should be at least 1"):
        load_config("classify", {"epochs": 0})
    with pytest.raises(ConfigError, match="batch='many' should be int"):
        load_config("classify", {"batch": "many"})
    assert load_config("classify", {"epochs": "3", "in_chans": "3"})["epochs"] == 3
