"""Model cards: weights carry their own metadata (timm ``PretrainedCfg``, torchvision ``Weights``).

A shipped model is two files in ``weights/``: ``<id>.pt`` (a ``torch.save`` dict, loadable with
``weights_only=True``: ``{"format": 1, "arch", "task", "arch_kwargs", "state_dict"}``; tensors may be
stored in float16 and are cast back to float32 on load) and ``<id>.json`` (this card). The UI and CLI
read classes, input size, normalisation, thresholds and metrics from the card, never from constants.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_models.errors import ConfigError, WeightsNotAvailableError
from spine_models.io.digest import sha256_file  # re-exported: cards pin weights by it

__all__ = ["ModelCard", "sha256_file", "weights_dir", "list_cards", "find_card", "save_checkpoint_file", "load_state", "card_file",
           "is_real_validated", "validation_badge", "dequantize_state", "INT8_SCALE", "write_preprocessing", "store_choice"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def weights_dir() -> Path:
    """The shipped weights folder (``$SPINE_MODELS_WEIGHTS`` overrides, for tests and deployments)."""
    import os

    return Path(os.environ.get("SPINE_MODELS_WEIGHTS", REPO_ROOT / "weights"))


@dataclass
class ModelCard:
    """SPEC "Model list" object plus what inference needs (normalisation, thresholds, preprocessing)."""

    id: str
    task: str  # classify | detect | segment
    arch: str
    view: str  # ap | lat | mri | any
    trained_on: str
    weights: str  # "weights/<file>" relative to the repo root (or an absolute path for run dirs)
    sha256: str
    input_size: int | list[int]
    train_command: str
    license: str
    classes: list[str] | None = None  # classify / detect
    structures: list[str] | None = None  # segment
    metrics: dict[str, Any] = field(default_factory=dict)  # the evaluation report's "metrics"
    in_chans: int = 1
    normalization: dict[str, Any] = field(default_factory=lambda: {"kind": "minmax"})
    preprocessing: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    intended_use: str = "Research use only; not a medical device."
    limitations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # split provenance of the evaluation
    created: str = ""
    # SPEC "Model cards": [{"data": name, "real": bool, "metrics": {...}}]; no real entry = phantom only
    validated_on: list[dict[str, Any]] = field(default_factory=list)
    # [{"data": folder name or "phantom", "license", "credit"}] (spine_models.models.provenance.SOURCES)
    sources: list[dict[str, Any]] = field(default_factory=list)
    # the inference path (engine.runtime): {} = torch; {"path": "onnxruntime", ...the figures it was validated with:
    # tolerance, max difference on which real films, latencies, the command}; a card without the key reads as {}
    runtime: dict[str, Any] = field(default_factory=dict)

    _TASKS = ("classify", "detect", "segment")

    def __post_init__(self) -> None:
        if self.task not in self._TASKS:
            raise ConfigError(f"model card {self.id!r}: task {self.task!r} is not one of {', '.join(self._TASKS)}")
        if self.task == "segment" and not self.structures:
            raise ConfigError(f"model card {self.id!r}: a segment model needs 'structures'")
        if self.task != "segment" and not self.classes:
            raise ConfigError(f"model card {self.id!r}: a {self.task} model needs 'classes'")
        for e in self.validated_on:
            if not (isinstance(e, dict) and isinstance(e.get("data"), str) and isinstance(e.get("real"), bool)
                    and isinstance(e.get("metrics"), dict)):
                raise ConfigError(f"model card {self.id!r}: validated_on entry {e!r} needs "
                                  "{'data': str, 'real': bool, 'metrics': dict}")
        for e in self.sources:
            if not (isinstance(e, dict) and all(isinstance(e.get(k), str) and e.get(k) for k in ("data", "license", "credit"))):
                raise ConfigError(f"model card {self.id!r}: sources entry {e!r} needs non-empty 'data', 'license' and "
                                  "'credit' strings (spine_models.models.provenance.source_entry builds one)")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.classes is None:
            d.pop("classes")
        if self.structures is None:
            d.pop("structures")
        return d

    def to_json(self, path: str | Path) -> None:
        """Write the card atomically: a full disk or a kill mid-write leaves the previous card intact."""
        from spine_models._atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"model card {d.get('id')!r}: unknown keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelCard":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def weights_path(self) -> Path:
        """Absolute path of the weight file: absolute as written, else beside the cards in
        ``weights_dir()`` (so ``$SPINE_MODELS_WEIGHTS`` deployments work), else under the repo root."""
        p = Path(self.weights)
        if p.is_absolute():
            return p
        beside = weights_dir() / p.name
        return beside if beside.exists() else REPO_ROOT / p


def _validated_on(card: ModelCard | dict[str, Any]) -> list[dict[str, Any]]:
    entries = card.get("validated_on") if isinstance(card, dict) else getattr(card, "validated_on", None)
    return list(entries or [])


def is_real_validated(card: ModelCard | dict[str, Any]) -> bool:
    """True when the card names at least one real dataset it was validated on (an empty list = phantom only)."""
    return any(e.get("real") is True for e in _validated_on(card))


def validation_badge(card: ModelCard | dict[str, Any]) -> str:
    """One line for the app and docs: "validated on real films: aasce-ap (Cobb MAE 3.1° [...])" with any shortcut
    warning of that entry, or the phantom-only label."""
    from spine_models.models.provenance import PHANTOM_ONLY_LABEL, PHANTOM_ONLY_LABEL_MRI, metric_phrase

    parts = []
    for e in _validated_on(card):
        if e.get("real") is not True:
            continue
        figures = "; ".join(metric_phrase(k, v) for k, v in (e.get("metrics") or {}).items())
        text = f"{e['data']} ({figures})" if figures else str(e["data"])
        if e.get("shortcut_warning"):
            base = e.get("metadata_baseline_balanced_accuracy")
            text += (" — shortcut warning: image metadata alone reaches "
                     + (metric_phrase("balanced_accuracy", base) if base else "above chance"))
        parts.append(text)
    view = card.get("view") if isinstance(card, dict) else getattr(card, "view", None)
    if view == "mri":  # MR images are not films: the same words a radiologist would use
        return "validated on real images: " + ", ".join(parts) if parts else PHANTOM_ONLY_LABEL_MRI
    return "validated on real films: " + ", ".join(parts) if parts else PHANTOM_ONLY_LABEL


def card_file(model: str | Path) -> Path:
    """The card file of a run folder (its ``card.json``) or of a card path: what a tuning script's ``--write``
    edits. Raises ValueError naming the reference when there is none (a shipped id is not edited this way)."""
    path = Path(model)
    if path.is_dir():
        path = path / "card.json"
    if not path.is_file():
        raise ValueError(f"--write needs a card file or run folder, not {str(model)!r}")
    return path


def write_preprocessing(path: str | Path, values: dict[str, Any]) -> None:
    """Set read-out keys in a card file's ``preprocessing`` (a value None removes its key): how a tuning script
    (docs/tune_*.py ``--write``) stores what it chose, the rest of the card untouched."""
    import json

    path = Path(path)
    card = json.loads(path.read_text())
    pre = card.setdefault("preprocessing", {})
    for key, value in values.items():
        if value is None:
            pre.pop(key, None)
        else:
            pre[key] = value
    path.write_text(json.dumps(card, indent=2) + "\n")


def store_choice(out: str | Path, record: dict[str, Any], card_path: str | Path | None, values: dict[str, Any]) -> None:
    """A tuning script's record written to ``out`` (JSON) and, with ``card_path`` (its ``--write``), the chosen read-out
    ``values`` into that card's preprocessing (:func:`write_preprocessing`): how every docs/tune_*.py stores its choice."""
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    if card_path:
        write_preprocessing(card_path, values)
        print(f"wrote {', '.join(f'{k}={v}' for k, v in values.items())} into {card_path}")


def list_cards(directory: str | Path | None = None) -> list[ModelCard]:
    """Every ``*.json`` card in the weights folder whose weight file exists, sorted by id."""
    d = Path(directory) if directory else weights_dir()
    cards = []
    for p in sorted(d.glob("*.json")):
        card = ModelCard.from_json(p)
        wp = Path(card.weights)
        if not wp.is_absolute():
            wp = d / wp.name if (d / wp.name).exists() else REPO_ROOT / wp
        if wp.exists():
            if not Path(card.weights).is_absolute() and wp.parent == d:
                card.weights = str(wp) if d != weights_dir() else card.weights
            cards.append(card)
    return cards


def find_card(model_id: str, directory: str | Path | None = None) -> ModelCard:
    cards = list_cards(directory)
    for c in cards:
        if c.id == model_id:
            return c
    valid = ", ".join(c.id for c in cards) or "(none shipped yet)"
    raise WeightsNotAvailableError(f"no shipped model {model_id!r}; available: {valid}")


INT8_SCALE = ".int8_scale"  # suffix of the per-output-channel scale stored beside an int8 weight tensor
INT8_MIN_NUMEL = 4096  # smaller tensors (biases, norms, small heads) stay float16


def save_checkpoint_file(path: str | Path, *, arch: str, task: str, state_dict: dict, arch_kwargs: dict | None = None,
                         half: bool = True, int8: bool = False) -> str:
    """Write a shipped weight file (float16 unless ``half=False``) and return its sha256.

    ``int8``: every conv/linear weight of at least ``INT8_MIN_NUMEL`` values is stored as symmetric int8 with one
    float32 scale per output channel (about half an fp16 file). Why storage only: inference dequantizes to float32 at
    load (:func:`dequantize_state`), so every engine runs unchanged; the card's metrics must be re-measured after it."""
    import torch

    sd: dict[str, Any] = {}
    quantized: list[str] = []
    for k, v in state_dict.items():
        if int8 and v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_NUMEL:
            w = v.detach().float().reshape(v.shape[0], -1)
            scale = (w.abs().amax(1) / 127.0).clamp_min(1e-12)
            sd[k] = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(v.shape).contiguous()
            sd[k + INT8_SCALE] = scale.contiguous()
            quantized.append(k)
        else:
            sd[k] = (v.half() if half and v.is_floating_point() else v).contiguous()
    blob = {"format": 1, "arch": arch, "task": task, "arch_kwargs": arch_kwargs or {}, "state_dict": sd}
    if quantized:
        blob["int8"] = quantized
    from spine_models._atomic import atomic_path

    with atomic_path(path) as tmp:  # a failed write (full disk) leaves the previous weight file intact
        torch.save(blob, tmp)
    return sha256_file(path)


def dequantize_state(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The float32 state dict of a shipped checkpoint: fp16 tensors cast back, int8 tensors times their scales."""
    sd = dict(ckpt["state_dict"])
    for k in ckpt.get("int8") or []:
        scale = sd.pop(k + INT8_SCALE).float()
        sd[k] = sd[k].float() * scale.reshape(-1, *([1] * (sd[k].dim() - 1)))
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def load_state(card: ModelCard, *, verify: bool = True) -> tuple[dict, dict]:
    """(float32 state_dict, arch_kwargs) of a card's weight file; checks its sha256 when ``verify``."""
    import torch

    path = card.weights_path()
    if not path.exists():
        raise WeightsNotAvailableError(f"{path}: weight file of model {card.id!r} is missing; retrain with: {card.train_command}")
    if verify and card.sha256 and sha256_file(path) != card.sha256:
        raise WeightsNotAvailableError(f"{path}: sha256 does not match the model card of {card.id!r}; the file is damaged or replaced")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return dequantize_state(ckpt), dict(ckpt.get("arch_kwargs") or card.arch_kwargs)
