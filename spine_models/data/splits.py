"""Per-patient, stratified, seeded train/val/test splits.

Why: the studies' data are small; an image of one patient (or an augmented copy of it) on both sides of
a split inflates every figure. So splitting is done on *patients*, stratified by each patient's majority
label, before any augmentation: trainers apply augmentation to the ``train`` part only, after this split
(``ClassificationTorchDataset(..., augment=...)`` is built for ``splits["train"]`` alone).
"""
from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from typing import Any, Sequence

from spine_models.data.adapters import order_classes
from spine_models.data.records import Sample, SpineDataset
from spine_models.errors import ConfigError, DatasetError

__all__ = ["split_dataset", "split_provenance", "parse_ratios", "PRESETS", "PARTS", "SPLIT_METHODS", "patient_key",
           "hash_part"]

PARTS = ("train", "val", "test")
PRESETS = {"8:1:1": (0.8, 0.1, 0.1), "75/15/10": (0.75, 0.15, 0.10), "7:1.5:1.5": (0.7, 0.15, 0.15)}
_NONE = "\x00unlabelled"
SPLIT_METHODS = ("shuffle", "hash")


def patient_key(patient_id: str) -> str:
    """A source-independent patient key: lower case, every run of punctuation/space as one '-'.

    Why: one subject's film sits in two sources under two spellings (fraiwan-ap ``N1,N,F,21`` and
    cadma-vertebra ``N1-N-F-21``); the hash split must put both on the same side."""
    return re.sub(r"[^0-9a-z]+", "-", str(patient_id).lower()).strip("-")


def hash_part(patient_id: str, ratios: tuple[float, float, float], seed: int = 0) -> str:
    """The part ("train" | "val" | "test") of one patient under the hash split.

    Why: the shuffle split depends on which other patients are in the dataset, so a model trained on
    several sources cannot name its held-out films on one source alone; a patient's hash part
    depends only on its key and the seed, so ``evaluate --split test`` on any one source re-finds
    exactly the patients the model never saw."""
    h = hashlib.sha256(f"spine-split:{seed}:{patient_key(patient_id)}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2 ** 64
    return "train" if u < ratios[0] else ("val" if u < ratios[0] + ratios[1] else "test")


def parse_ratios(ratios: "str | Sequence[float]") -> tuple[float, float, float]:
    """"8:1:1", "75/15/10", "0.7,0.2,0.1" or a 3-tuple -> fractions summing to 1."""
    if isinstance(ratios, str):
        text = ratios.strip()
        if text in PRESETS:
            return PRESETS[text]
        try:
            vals = [float(v) for v in re.split(r"[:/,\s]+", text) if v]
        except ValueError as exc:
            raise ConfigError(f"split ratios {ratios!r} are not numbers; use e.g. '8:1:1' or '75/15/10'") from exc
    else:
        vals = [float(v) for v in ratios]
    if len(vals) == 2:
        vals.append(0.0)
    if len(vals) != 3 or any(v < 0 or math.isnan(v) for v in vals) or sum(vals) <= 0 or vals[0] <= 0:
        raise ConfigError(f"split ratios {ratios!r} must be three non-negative numbers train:val:test with train > 0, e.g. '8:1:1'")
    total = sum(vals)
    return (vals[0] / total, vals[1] / total, vals[2] / total)


def _allocate(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts; every part with a non-zero ratio gets >= 1 when n allows it."""
    exact = [n * r for r in ratios]
    counts = [math.floor(e) for e in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i in range(3) if ratios[i] > 0]
    if n >= len(wanted):
        for i in wanted:
            while counts[i] == 0:
                donor = max(range(3), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _majority(labels: Counter, class_order: list[str]) -> str:
    if not labels or all(k is None for k in labels):
        return _NONE
    rank = {c: i for i, c in enumerate(class_order)}
    return min((k for k in labels if k is not None), key=lambda k: (-labels[k], rank.get(k, len(rank)), k))


def split_dataset(
    ds: SpineDataset,
    ratios: "str | Sequence[float]" = "8:1:1",
    seed: int = 0,
    stratify: bool = True,
    group_near_duplicates: bool = False,
    method: str = "shuffle",
) -> dict[str, SpineDataset]:
    """Split ``ds`` into ``{"train", "val", "test"}`` by patient.

    Every patient's samples land in one part; with ``stratify`` patients are grouped by their majority
    label and each group is divided with the ratios, so every class shows up in every part whenever the
    class has at least as many patients as there are non-empty parts. Same inputs and seed -> same split
    (string-seeded ``random.Random``, independent of PYTHONHASHSEED). Sample order inside a part follows ``ds``.

    ``group_near_duplicates`` first joins patients whose images are near duplicates
    (:func:`spine_models.data.leakage.find_near_duplicates`) into one group, so re-saved copies of a film
    under another name cannot straddle the split (fraiwan-ap has such pairs; ~5 s per 200 films, ~50 s per 1000 look-alike phantom films).
    """
    fr = parse_ratios(ratios)
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split method {method!r} is not known; use one of {', '.join(SPLIT_METHODS)}")
    if not ds.samples:
        raise DatasetError(f"dataset {ds.name!r} is empty; nothing to split")
    group_of = {s.patient_id: s.patient_id for s in ds.samples}
    n_merged = 0
    unchecked: list[str] = []  # files the near-duplicate check could not read: reported with every part
    if group_near_duplicates:
        from spine_models.data.leakage import find_near_duplicates

        def root(p: str) -> str:
            while group_of[p] != p:
                group_of[p] = group_of[group_of[p]]
                p = group_of[p]
            return p

        for r in find_near_duplicates(ds, problems=unchecked):
            ra, rb = root(r["patient_a"]), root(r["patient_b"])
            if ra != rb:
                group_of[max(ra, rb)] = min(ra, rb)
                n_merged += 1
        group_of = {p: root(p) for p in group_of}
    by_patient: dict[str, list[Sample]] = {}
    for s in ds.samples:
        by_patient.setdefault(group_of[s.patient_id], []).append(s)
    class_order = ds.classes or order_classes(s.label for s in ds.samples if s.label)
    strata: dict[str, list[str]] = {}
    for pid, samples in by_patient.items():
        key = _majority(Counter(s.label for s in samples), class_order) if stratify else "all"
        strata.setdefault(key, []).append(pid)
    assign: dict[str, str] = {}
    for key in sorted(strata, key=str) if method == "shuffle" else ():
        pids = sorted(strata[key])
        random.Random(f"spine-split:{seed}:{key}").shuffle(pids)
        n_tr, n_va, _ = _allocate(len(pids), fr)
        for i, pid in enumerate(pids):
            assign[pid] = "train" if i < n_tr else ("val" if i < n_tr + n_va else "test")
    if method == "hash":  # per patient, independent of the rest of the dataset (not stratified)
        assign = {pid: hash_part(pid, fr, seed) for pid in by_patient}
    prov_base = {"seed": int(seed), "ratios": list(fr), "stratify": bool(stratify) and method == "shuffle",
                 "method": method, "source": ds.name,
                 "group_near_duplicates": bool(group_near_duplicates), "patients_merged_as_duplicates": n_merged}
    out: dict[str, SpineDataset] = {}
    for part in PARTS:
        out[part] = SpineDataset(
            name=f"{ds.name}:{part}",
            samples=[s for s in ds.samples if assign[group_of[s.patient_id]] == part],
            classes=list(ds.classes),
            structures=list(ds.structures),
            box_classes=list(ds.box_classes),
            problems=list(ds.problems) + unchecked,
            root=ds.root,
            meta={**ds.meta, "split": {**prov_base, "part": part}},
        )
    return out


def split_provenance(splits: dict[str, SpineDataset]) -> dict[str, Any]:
    """What a model card records about its split: seed, ratios, patients and samples per class per part."""
    first = next(iter(splits.values()))
    base = dict(first.meta.get("split", {}))
    base.pop("part", None)
    parts: dict[str, Any] = {}
    for name, part in splits.items():
        parts[name] = {
            "n": len(part),
            "n_patients": len(part.patients),
            "per_class": {c: part.counts().get(c, 0) for c in (part.classes or sorted(part.counts()))},
        }
    base["parts"] = parts
    base["n_patients"] = sum(p["n_patients"] for p in parts.values())
    base["n"] = sum(p["n"] for p in parts.values())
    return base
