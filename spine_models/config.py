"""Task configuration: one defaults file per task, one merge, validated types (Ultralytics ``cfg/``).

Precedence, lowest to highest: ``spine_models/cfg/<task>.yaml`` < a user YAML file (``--config``) <
explicit overrides (CLI flags, ``--set key=value``, the Train page form). Every key must exist in the
defaults file; a value must have the default's type (ints are accepted where floats are expected; a
default of ``null`` accepts anything; lists accept lists). Unknown keys raise with the valid ones.

``train_config`` / ``train_command`` turn the values of a ``spine-models train`` call into the run's
config and its exact command line; the CLI (``commands/train.py``) and the job store
(``engine/jobs.py``) both call them, so a job trains with what the same command would.
"""
from __future__ import annotations

import difflib
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from spine_models.errors import ConfigError

__all__ = ["CFG_DIR", "defaults", "load_config", "check_cfg", "parse_set_args", "TRAIN_FLAGS", "TRAIN_MODES", "CHOICES",
           "MINIMUM", "RUN_KEYS", "train_config", "train_command"]

#: ``spine-models train`` options that are flags, with their types, in command-line order; every
#: other setting is ``--set key=value``
TRAIN_FLAGS: dict[str, type] = {"model": str, "epochs": int, "imgsz": int, "batch": int, "lr": float, "mode": str,
                                "init": str, "seed": int, "device": str, "nproc": int}
TRAIN_MODES = ("frozen", "finetune")

#: keys a run adds to its config (``load_config``: task; ``train_config``: train_command, resume); every other key an
#: engine reads is in its task's defaults file (tests/test_config.py checks the engines' sources)
RUN_KEYS = ("task", "train_command", "resume")

#: per task, the keys that take one of a few values, and those values (the engines use these tables, nothing else)
CHOICES: dict[str, dict[str, tuple[Any, ...]]] = {
    "classify": {
        "mode": TRAIN_MODES,
        "val_metric": ("balanced_accuracy", "loss", "accuracy", "auc"),
        "in_chans": (1, 3),
        "resize_mode": ("stretch", "letterbox"),
        "optimizer": ("adam", "adamw", "sgd"),
        "view": (None, "ap", "lat", "mri", "any"),
        "scheduler": ("none", "cosine"),
    },
    "segment": {
        "tta": ("none", "hflip"),
        "grader_loss": ("ce", "sord"),
    },
}

#: per task, the lowest value of integer keys that must be positive
MINIMUM: dict[str, dict[str, int]] = {
    "classify": {"epochs": 1, "batch": 1, "nproc": 1},
    "segment": {"nproc": 1, "grader_members": 1},
    "detect": {"nproc": 1},
}

CFG_DIR = Path(__file__).resolve().parent / "cfg"


def defaults(task: str) -> dict[str, Any]:
    path = CFG_DIR / f"{task}.yaml"
    if not path.exists():
        valid = ", ".join(sorted(p.stem for p in CFG_DIR.glob("*.yaml")))
        raise ConfigError(f"no defaults for task {task!r}; valid tasks: {valid}")
    return yaml.safe_load(path.read_text()) or {}


def _coerce(key: str, value: Any, default: Any, task: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
    elif isinstance(default, list):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
    elif isinstance(default, dict):
        if isinstance(value, Mapping):
            return dict(value)
    raise ConfigError(f"{task} config: {key}={value!r} should be {type(default).__name__} like the default {default!r}")


def load_config(task: str, overrides: Mapping[str, Any] | None = None, file: str | Path | None = None) -> dict[str, Any]:
    """Defaults < ``file`` < ``overrides`` (``None`` values in overrides mean "not given")."""
    cfg = defaults(task)
    layers: list[Mapping[str, Any]] = []
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            layers.append(yaml.safe_load(p.read_text()) or {})
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if overrides:
        layers.append({k: v for k, v in overrides.items() if v is not None})
    for layer in layers:
        for key, value in layer.items():
            if key not in cfg:
                close = difflib.get_close_matches(str(key), list(cfg), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"{task} config: unknown key {key!r}; {hint}valid keys: {', '.join(sorted(cfg))}")
            cfg[key] = _coerce(key, value, cfg[key], task)
    cfg["task"] = task
    return check_cfg(task, cfg)


def check_cfg(task: str, cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """Raise naming the key, its value and the valid ones when a value is not one ``CHOICES`` allows or is below
    ``MINIMUM``; returns ``cfg``. Called by ``load_config`` and again by an engine handed a hand-made config."""
    for key, allowed in CHOICES.get(task, {}).items():
        if key in cfg and cfg[key] not in allowed:
            valid = ", ".join(str(v) for v in allowed if v is not None)
            raise ConfigError(f"{task} config: {key}={cfg[key]!r}; valid: {valid}")
    for key, low in MINIMUM.get(task, {}).items():
        v = cfg.get(key)
        if key in cfg and (not isinstance(v, int) or isinstance(v, bool) or v < low):
            raise ConfigError(f"{task} config: {key}={v} should be at least {low}")
    return cfg


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """``["lr=1e-3", "epochs=5"]`` -> dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def train_command(task: str, *, flags: Mapping[str, Any] | None = None, data: Sequence[str | Path] = (),
                  out: str | Path | None = None, config_file: str | Path | None = None, sets: Sequence[str] = (),
                  resume: bool = False, quiet: bool = False) -> str:
    """The exact ``spine-models train`` command for these values (stable order, shell-quoted): a card's
    ``train_command`` reproduces the run however it was started."""
    flags = flags or {}
    parts = ["spine-models", "train", "--task", task]
    if flags.get("model"):
        parts += ["--model", str(flags["model"])]
    for d in data:
        parts += ["--data", str(d)]
    if out:
        parts += ["--out", str(out)]
    for k in list(TRAIN_FLAGS)[1:]:
        if flags.get(k) is not None:
            parts += [f"--{k}", str(flags[k])]
    if config_file:
        parts += ["--config", str(config_file)]
    for item in sets:
        parts += ["--set", item]
    if resume:
        parts.append("--resume")
    if quiet:
        parts.append("--quiet")
    return shlex.join(parts)


def train_config(task: str, *, flags: Mapping[str, Any] | None = None, data: Sequence[str | Path] = (),
                 out: str | Path | None = None, config_file: str | Path | None = None, sets: Sequence[str] = (),
                 resume: bool = False, quiet: bool = False) -> dict[str, Any]:
    """The config a ``spine-models train`` call trains with: defaults < ``config_file`` < ``sets`` and
    ``flags`` (None: not given), plus the run-level ``train_command`` and ``resume``."""
    flags = flags or {}
    overrides: dict[str, Any] = parse_set_args(list(sets))
    for k in TRAIN_FLAGS:
        if flags.get(k) is not None:
            overrides[k] = flags[k]
    if data:
        overrides["data"] = list(data)
    if out and "out" in defaults(task):  # not every task's defaults file records the run folder
        overrides["out"] = out
    cfg = load_config(task, overrides, config_file)
    # run-level settings that are not training hyper-parameters (not in the defaults files)
    cfg["train_command"] = train_command(task, flags=flags, data=data, out=out, config_file=config_file, sets=sets,
                                         resume=resume, quiet=quiet)
    cfg["resume"] = bool(resume)
    return cfg
