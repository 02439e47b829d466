"""Do the shipped model cards' figures reproduce? (issue 13: "every shipped card's metrics reproduce").

    python docs/reproduce_cards.py [--only ID ...] [--work /tmp/h13_cache] [--out docs/reproduce_cards]

For every card in weights/*.json, ``CHECKS`` below says, explicitly, where the card says its figures come from:
the data command(s) (``spine-models synth KIND --n N --out DIR --seed S [--implant-fraction F]`` or a
``../shared/data`` folder), the evaluation command (``spine-models evaluate ...`` or the docs script the card
names in ``validated_on[].from``) and which card values to compare with which report values. The script builds
the phantom data into ``--work`` (reused when present: same arguments -> byte-identical output, SPEC), runs each
evaluation through the CLI / the docs script in a subprocess, and compares every recorded value: the point value
and both ends of the 95 % CI, confusion matrices element by element, counts exactly; tolerance ``TOL`` (1e-6).

Writes ``<out>.md`` (one row per compared value: card, key, card value, reproduced value, ✔/✘, plus a per-check
table with the command and seconds) and ``<out>.json``. Exit status 1 if any value differs (✘), a check fails to
run, or a card cannot be tied to a data command; 0 when everything reproduces; 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
TOL = 1e-6

__all__ = ["CHECKS", "Check", "Synth", "card_keys", "compare", "lookup", "main"]


# ------------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Synth:
    """One phantom data set: ``spine-models synth KIND --n N --out DIR --seed S --implant-fraction F``."""

    kind: str
    n: int
    seed: int
    implant_fraction: float = 0.25

    @property
    def folder(self) -> str:
        """Cache folder name: every argument that changes the output."""
        return f"{self.kind}_n{self.n}_s{self.seed}_if{self.implant_fraction:g}"

    def argv(self, out: Path) -> list[str]:
        """The synth command line (without the interpreter)."""
        return ["synth", self.kind, "--n", str(self.n), "--out", str(out), "--seed", str(self.seed),
                "--implant-fraction", f"{self.implant_fraction:g}", "--quiet"]


@dataclass(frozen=True)
class Check:
    """One reproduction of (part of) a card's figures.

    ``data``: Synth sets or paths relative to the repository (``../shared/data/...``), passed as repeated --data.
    ``runner``: ``evaluate`` (``spine-models evaluate --model CARD --data ... [--split test]``) or
    ``real_vertebra_eval`` (``docs/make_real_vertebra_eval.py``, the script seg_unet_ap's cadma figure names).
    ``keys``: (card path, report path) pairs; see ``lookup`` for the path syntax.
    ``source``: where the card says these figures come from (quoted from the card).
    """

    card: str
    data: tuple[Synth | str, ...]
    keys: tuple[tuple[str, str], ...]
    source: str
    split: str = "all"
    runner: str = "evaluate"
    note: str = ""
    deterministic: bool = True


@dataclass(frozen=True)
class Untied:
    """A card whose figures cannot be tied to a data command, and what the card would need."""

    card: str
    why: str
    needs: str


def _m(*names: str, prefix: str = "metrics") -> tuple[tuple[str, str], ...]:
    """Same dotted path in the card and in the report, under ``prefix``."""
    return tuple((f"{prefix}.{n}", f"{prefix}.{n}") for n in names)


def _classify(classes: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The classification figures of a card made by ``spine-models evaluate`` (card metrics = report metrics)."""
    per = [f"per_class.{c}.{k}" for c in classes for k in ("sensitivity", "specificity", "precision", "npv", "f1")]
    return _m("n", "confusion_matrix", "accuracy", "balanced_accuracy", "macro_f1", "auc_macro", "calibration.ece",
              *per) + _audit()


def _audit() -> tuple[tuple[str, str], ...]:
    """The card's metadata-shortcut audit (copied from the same report)."""
    return (("audit.metadata_baseline.balanced_accuracy", "audit.metadata_baseline.balanced_accuracy"),
            ("audit.shortcut_warning", "audit.shortcut_warning"))


def _validated(data: str, pairs: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """``validated_on[data=...]`` values (what the app shows) against report paths."""
    return tuple((f"validated_on[data={data}].metrics.{k}", v) for k, v in pairs.items())


def _detect(classes: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Detection figures of a card made by ``spine-models evaluate``."""
    return _m("map50", "map50_95", *[f"per_class.{c}.{k}" for c in classes for k in ("ap50", "sensitivity", "specificity")],
              "n_images", *[f"images_per_class.{c}.{k}" for c in classes for k in ("positive", "negative")]) + _audit()


_DISC_SEG = ("disc_ap50", "disc_ap50_95", "dice.disc", "iou.disc", "disc_level_accuracy", "n_discs_graded",
             "lumbar_discs_named_fraction")
_GRADES = ("pfirrmann_accuracy", "pfirrmann_within1", "pfirrmann_confusion_matrix",
           *[f"per_class.{c}.{k}" for c in ("herniation", "bulging", "narrowing", "modic", "up_endplate", "low_endplate")
             for k in ("auc", "sensitivity", "specificity", "n_positive", "n")])
def _cadma_check(card_id: str, note: str) -> Check:
    """A vertebra model's cadma-vertebra AP50, which its card copies from docs/real_vertebra_eval.json."""
    return Check(card_id, (AASCE, CADMA),
                 ((("validated_on[data=cadma-vertebra].metrics.vertebra_ap50",
                    f"results[data=cadma-vertebra&card_id={card_id}].metrics.vertebra_ap50"),)),
                 "validated_on[cadma-vertebra].from: 'docs/real_vertebra_eval.json' (docs/make_real_vertebra_eval.py, "
                 "--split-card seg_unet_ap, --data aasce-ap --data cadma-vertebra)", runner="real_vertebra_eval", note=note)


_SEG_AP = ("dice.vertebra", "iou.vertebra", "cobb_mae_deg", "cobb_smape_percent", "cobb_within_5deg", "landmark_mre_px",
           "landmark_mre_rel", "vertebrae_matched_fraction", "vertebra_level_accuracy", "cobb_not_shown_fraction",
           "vertebra_ap50")
_LAT = ("vertebra", "spinous_process", "disc_height", "anterior_line", "posterior_line")
_CLS = {"bin_ap": ("normal", "scoliosis"), "bin_lat": ("normal", "spondylolisthesis"),
        "three": ("normal", "scoliosis", "spondylolisthesis")}
_HEAD = {"balanced_accuracy": "metrics.balanced_accuracy", "macro_f1": "metrics.macro_f1", "auc_macro": "metrics.auc_macro"}

AP_4101, LAT_4102 = Synth("xray-ap", 150, 4101), Synth("xray-lat", 150, 4102)
AP_4301, LAT_4302 = Synth("xray-ap", 150, 4301), Synth("xray-lat", 150, 4302)
DET_9001 = Synth("xray-ap", 200, 9001, 0.5)
LAT_912 = Synth("xray-lat", 60, 912)
MRI_41 = Synth("mri-lumbar", 20, 41)
FRAIWAN, AASCE, CADMA, SPIDER = (f"../shared/data/{d}" for d in ("fraiwan-ap", "aasce-ap", "cadma-vertebra", "spider-mri"))

CHECKS: tuple[Check | Untied, ...] = (
    Check("ap_scoliosis_mobilenet_v2_fraiwan", (FRAIWAN,), _classify(_CLS["bin_ap"]) + _validated("fraiwan-ap", _HEAD)
          + (("validated_on[data=fraiwan-ap].metadata_baseline_balanced_accuracy",
              "audit.metadata_baseline.balanced_accuracy"),),
          "notes: 'spine-models evaluate --model RUN --data /work/shared/data/fraiwan-ap --split test'", split="test"),
    Check("det_fasterrcnn_implant", (DET_9001,), _detect(("lumbar_implant", "scoliosis"))
          + _validated("phantom xray-phantom-2 xray-ap seed 13", {"map50": "metrics.map50", "map50_95": "metrics.map50_95"}),
          "notes: 'spine-models synth xray-ap --n 200 --out DIR --seed 9001 --implant-fraction 0.5'",
          note="validated_on names the training seed (13); the test seed 9001 is in notes"),
    Check("det_yolov8n_implant", (DET_9001,), _detect(("lumbar_implant", "scoliosis"))
          + _validated("phantom xray-phantom-2 xray-ap seed 11", {"map50": "metrics.map50", "map50_95": "metrics.map50_95"}),
          "notes: 'spine-models synth xray-ap --n 200 --out DIR --seed 9001 --implant-fraction 0.5'",
          note="validated_on names the training seed (11); the test seed 9001 is in notes"),
    Check("mri_disc_grader_spider", (SPIDER,), _m(*_DISC_SEG, *_GRADES) + _audit()
          + _validated("spider-mri", {"pfirrmann_accuracy": "metrics.pfirrmann_accuracy",
                                      "per_class_herniation_auc": "metrics.per_class.herniation.auc",
                                      "disc_ap50": "metrics.disc_ap50"}),
          "data.evaluation: ../shared/data/spider-mri, split test (61 slices, 34 patients)", split="test"),
    Check("mri_disc_locator_spider", (SPIDER,), _m(*_DISC_SEG) + _audit()
          + _validated("spider-mri", {"disc_ap50": "metrics.disc_ap50", "disc_level_accuracy": "metrics.disc_level_accuracy"}),
          "data.evaluation: ../shared/data/spider-mri, split test (61 slices, 34 patients)", split="test"),
    Check("mri_disc_state_resnet18_synth", (MRI_41,), _classify(("normal", "degeneration", "bulge", "herniation"))
          + _validated("phantom spine-models 0.1.0 mri-lumbar seed 31", _HEAD),
          "trained_on: 'spine-models synth mri-lumbar --n 20 --out /tmp/wc/mri_test --seed 41'; notes: 'spine-models "
          "evaluate --model /tmp/wc/mri_disc_r18 --data /tmp/wc/mri_test' (all 100 discs of the unseen seed 41)",
          note="the card's evaluation ran on the float32 run folder; the shipped weights were stored as int8 later "
               "(notes: 'metrics re-measured after it')"),
    Check("seg_unet_ap", (AASCE,), _m(*_SEG_AP) + _audit()
          + _validated("aasce-ap", {k: f"metrics.{k}" for k in ("cobb_mae_deg", "cobb_smape_percent", "cobb_within_5deg")}),
          "notes: 'spine-models evaluate --model seg_unet_ap --data ../shared/data/aasce-ap --split test'", split="test"),
    Check("seg_vertebra_corners_aasce", (AASCE,), _m(*_SEG_AP) + _audit()
          + _validated("aasce-ap", {k: f"metrics.{k}" for k in ("cobb_mae_deg", "cobb_smape_percent", "cobb_within_5deg")}),
          "notes: 'spine-models evaluate --model seg_vertebra_corners_aasce --data ../shared/data/aasce-ap --split test'",
          split="test"),
    Check("seg_unet_lat", (LAT_912,), _m(*[f"{k}.{s}" for k in ("dice", "iou") for s in _LAT], "slip_mae_percent")
          + _audit() + _validated("phantom xray-phantom-2 xray-lat seed 12", {"slip_mae_percent": "metrics.slip_mae_percent",
                                                                             "dice_vertebra": "metrics.dice.vertebra"}),
          "notes: 'spine-models synth xray-lat --n 60 --out DIR --seed 912'",
          note="validated_on names the training seed (12); the test seed 912 is in notes"),
    Check("xray_3class_mobilenet_v2_synth", (AP_4101, LAT_4102), _classify(_CLS["three"])
          + _validated("phantom xray-phantom-2 xray-ap xray-lat seeds 21, 22", _HEAD),
          "limitations: 'on unseen seeds 4101/4102 (300 films)'; data.evaluation n_per_class (AP 150, lateral 150)",
          note="seeds from limitations text, n 150 each from n_per_class; validated_on names the training seeds"),
    Check("xray_3class_routed_synth", (AP_4301, LAT_4302), _classify(_CLS["three"])
          + _validated("phantom xray-phantom-2 xray-ap xray-lat seeds 27, 28", _HEAD),
          "validated_on: '300 films, unseen seeds 4301, 4302'; notes: 'spine-models evaluate --model "
          "xray_3class_routed_synth --data AP --data LAT'"),
    Check("xray_ap_cobb_measure_synth", (AP_4101,), _classify(_CLS["bin_ap"])
          + _validated("phantom xray-phantom-2 xray-ap seed 21", _HEAD),
          "validated_on: '150 films, unseen seed 4101'"),
    Check("xray_lat_slip_roi_mobilenet_v2_synth", (LAT_4102,), _classify(_CLS["bin_lat"])
          + _validated("phantom xray-phantom-2 xray-lat seeds 22, 25, 26", _HEAD),
          "validated_on: '150 films, unseen seed 4102'"),
    Check("xray_view_mobilenet_v2_synth", (AP_4101, LAT_4102), _classify(("ap", "lat"))
          + _validated("phantom xray-phantom-2 xray-ap xray-lat seeds 31, 32", _HEAD),
          "validated_on: '300 films, unseen seeds 4101, 4102' (data.evaluation: ap_test, lat_test, 150 each)",
          note="which seed is AP is inferred: lat_test is seed 4102 on xray_lat_slip_roi's card, so AP is 4101"),
    # last: the slowest check (near-duplicate search over every aasce-ap and cadma-vertebra film, then two test parts)
    *(_cadma_check(card_id, note) for card_id, note in (
        ("seg_unet_ap", "the docs script also scores aasce-ap (its training films decide the near-duplicate drop)"),
        ("seg_vertebra_corners_aasce", "the U-Net's split: the corner model is trained on it"))),
)


# ------------------------------------------------------------------------------------------------ paths
_PART = re.compile(r"^([^\[]+)(?:\[(.+)\])?$")


def _split_path(path: str) -> list[str]:
    """Split at dots outside brackets (selector values may contain dots and spaces)."""
    parts, depth, cur = [], 0, ""
    for ch in path:
        if ch == "." and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        cur += ch
    return parts + [cur]


def lookup(obj: Any, path: str) -> Any:
    """Value at a dotted path; ``name[k=v&k2=v2]`` picks the list element whose fields match.

    Raises KeyError naming the first part that is missing.
    """
    for part in _split_path(path):
        m = _PART.match(part)
        if m is None or not isinstance(obj, dict) or m.group(1) not in obj:
            raise KeyError(part)
        obj = obj[m.group(1)]
        if m.group(2):
            conds = dict(c.split("=", 1) for c in m.group(2).split("&"))
            hits = [e for e in obj if isinstance(e, dict) and all(str(e.get(k)) == v for k, v in conds.items())]
            if len(hits) != 1:
                raise KeyError(part)
            obj = hits[0]
    return obj


def card_keys(check: Check) -> list[str]:
    """The card paths a check compares."""
    return [c for c, _ in check.keys]


# ------------------------------------------------------------------------------------------------ compare
def _flat(v: Any) -> list[Any]:
    """Numbers of a value in a fixed order: M -> value, ci low, ci high; nested lists flattened."""
    if isinstance(v, dict) and "value" in v:
        return [v["value"], *(v.get("ci95") or [None, None])]
    if isinstance(v, list):
        return [x for e in v for x in _flat(e)]
    return [v]


def compare(card_value: Any, got: Any, tol: float = TOL) -> tuple[bool, float | None]:
    """(match, largest absolute difference) of two values: numbers within ``tol``, None/bool/str exactly."""
    a, b = _flat(card_value), _flat(got)
    if len(a) != len(b):
        return False, None
    worst = 0.0
    for x, y in zip(a, b):
        if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
            if x != y:
                return False, None
            continue
        if math.isnan(x) and math.isnan(y):
            continue
        worst = max(worst, abs(float(x) - float(y)))
    return worst <= tol, worst


def _fmt(v: Any) -> str:
    """Short text of a card or report value."""
    if isinstance(v, dict) and "value" in v:
        ci = v.get("ci95") or [None, None]
        ci_txt = f" [{_num(ci[0])}, {_num(ci[1])}]" if ci[0] is not None else ""
        return _num(v["value"]) + ci_txt
    if isinstance(v, list):
        return json.dumps(v, separators=(",", ":"))
    return _num(v)


def _num(x: Any) -> str:
    """A number at 6 significant digits (the comparison itself uses full precision)."""
    if isinstance(x, bool) or not isinstance(x, float):
        return str(x)
    return f"{x:.6g}"


# ------------------------------------------------------------------------------------------------ running
def _env() -> dict[str, str]:
    """The offline environment the CLI runs in here, on torch: the cards' figures are the reference runtime's (a card
    whose ``runtime`` switches ONNX Runtime on records its own check against them; bench/runtime_heldout.py)."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1", YOLO_OFFLINE="1",
               YOLO_AUTOINSTALL="False", SPINE_MODELS_RUNTIME="torch")
    return env


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "spine_models.cli", *args]


def _show(cmd: list[str]) -> str:
    """A command as one would type it (interpreter shown as ``spine-models`` / ``python``)."""
    if cmd[1:3] == ["-m", "spine_models.cli"]:
        cmd = ["spine-models", *cmd[3:]]
    elif cmd[0] == sys.executable:
        cmd = ["python", *cmd[1:]]
    return shlex.join(str(c) for c in cmd)


def build_data(item: Synth | str, work: Path) -> tuple[str, str, float]:
    """(data path, command, seconds spent; 0 when cached) for one --data item."""
    if isinstance(item, str):
        return item, f"(shared data {item}, read as it is)", 0.0
    out = work / "data" / item.folder
    cmd = _cli(item.argv(out))
    if (out / "MANIFEST.json").is_file():
        return str(out), _show(cmd), 0.0
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    t0 = time.time()
    proc = subprocess.run(_cli(item.argv(tmp)), cwd=REPO, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{_show(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    tmp.rename(out)
    return str(out), _show(cmd), time.time() - t0


def run_check(check: Check, work: Path, reuse: bool = False, timeout: float | None = None) -> dict[str, Any]:
    """Build the data, run the evaluation (or, with ``reuse``, read the report an earlier run left), compare."""
    rec: dict[str, Any] = {"card": check.card, "runner": check.runner, "source": check.source, "note": check.note,
                           "deterministic": check.deterministic, "data_commands": [], "data_seconds": 0.0}
    paths = []
    for item in check.data:
        p, cmd, secs = build_data(item, work)
        paths.append(p)
        rec["data_commands"].append(cmd)
        rec["data_seconds"] += secs
    (work / "reports").mkdir(parents=True, exist_ok=True)
    card_json = WEIGHTS / f"{check.card}.json"
    if check.runner == "evaluate":
        out = work / "reports" / f"{check.card}.{check.runner}.json"
        cmd = _cli(["evaluate", "--model", check.card, *[a for p in paths for a in ("--data", p)],
                    *(["--split", check.split] if check.split != "all" else []), "--out", str(out), "--quiet"])
    elif check.runner == "real_vertebra_eval":
        out_stem = work / "reports" / f"{check.card}.{check.runner}"
        out = out_stem.with_name(out_stem.name + ".json")  # the script writes <stem>.json and <stem>.md
        cmd = [sys.executable, str(REPO / "docs" / "make_real_vertebra_eval.py"), "--split-card", str(card_json),
               "--model", str(card_json), *[a for p in paths for a in ("--data", p)], "--out", str(out_stem)]
    else:
        raise ValueError(f"unknown runner {check.runner!r}")
    rec["command"] = _show(cmd)
    timing = out.with_name(out.name + ".seconds")
    if reuse and out.is_file():  # an earlier run of the same command left its report
        rec["reused_report"] = True
        rec["eval_seconds"] = float(timing.read_text()) if timing.is_file() else None
    else:
        out.unlink(missing_ok=True)
        timing.unlink(missing_ok=True)
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rec["eval_seconds"] = time.time() - t0
            rec["error"] = f"stopped after the --timeout of {timeout:.0f} s"
            rec["rows"] = []
            return rec
        rec["eval_seconds"] = time.time() - t0
        if proc.returncode != 0:
            rec["error"] = f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
            rec["rows"] = []
            return rec
        timing.write_text(f"{rec['eval_seconds']:.1f}\n")
    report = json.loads(out.read_text())
    card = json.loads(card_json.read_text())
    rows = []
    for card_path, report_path in check.keys:
        row: dict[str, Any] = {"key": card_path, "report_key": report_path, "card_value": None, "got": None,
                               "match": False, "diff": None}
        rows.append(row)
        for side, obj, path in (("card", card, card_path), ("report", report, report_path)):
            try:
                row["card_value" if side == "card" else "got"] = lookup(obj, path)
            except KeyError as e:
                row["why"] = f"not in the {side} ({e})"
                break
        else:
            row["match"], row["diff"] = compare(row["card_value"], row["got"])
    rec["rows"] = rows
    rec["report"] = str(out)
    return rec


# ------------------------------------------------------------------------------------------------ output
def _status(rec: dict[str, Any]) -> str:
    if rec.get("untied"):
        return "✘ not tied to data"
    if rec.get("error"):
        return "✘ did not run"
    bad = sum(not r["match"] for r in rec["rows"])
    return "✔" if bad == 0 else f"✘ {bad} of {len(rec['rows'])} differ"


def _secs(rec: dict[str, Any]) -> str:
    """Evaluation seconds, or why there are none."""
    s = rec.get("eval_seconds")
    txt = "—" if s is None else f"{s:.0f}"
    return txt + (" (report reused)" if rec.get("reused_report") else "")


def write_outputs(results: list[dict[str, Any]], out: Path, argv: Sequence[str], total: float) -> None:
    """``<out>.json`` (every record) and ``<out>.md`` (summary + one row per compared value)."""
    out.with_suffix(".json").write_text(json.dumps({"tolerance": TOL, "argv": list(argv), "total_seconds": total,
                                                    "results": results}, indent=1, default=str) + "\n")
    lines = ["# Do the shipped cards' figures reproduce?", "",
             f"Generated by `python docs/reproduce_cards.py {shlex.join(argv)}` (issue 13). Each card's figures are "
             "recomputed with the data command and evaluation the card itself names (the table `CHECKS` in the "
             f"script says where each comes from) and compared with the card: point value and both CI ends, "
             f"tolerance {TOL:g}. Phantom data is rebuilt with `spine-models synth` (byte-identical for the same "
             "arguments); `data s` is 0 when the folder was already in the cache. This invocation took "
             f"{total:.0f} s; the evaluations' own times add up to "
             f"{sum(r.get('eval_seconds') or 0 for r in results):.0f} s.", ""]
    if any(r.get("reused_report") for r in results):
        lines += ["`(report reused)`: `--reuse-reports` compared the report an earlier run of the same command left "
                  "in `--work` (an interrupted run resumed); its `eval s` is the time that run measured, `—` when "
                  "that run did not record it.", ""]
    lines += ["Commands run from the repository root (`../shared/data` = the shared data folder).", "",
              "| card | check | data command(s) | evaluation command | data s | eval s | result |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        if r.get("untied"):
            lines.append(f"| `{r['card']}` | — | — | — | — | — | ✘ not tied to data: {r['why']} (needs: {r['needs']}) |")
            continue
        data = "<br>".join(f"`{c}`" for c in r["data_commands"])
        lines.append(f"| `{r['card']}` | {r['runner']} | {data} | `{r.get('command', '')}` | {r['data_seconds']:.0f} | "
                     f"{_secs(r)} | {_status(r)} |")
    lines += ["", "Where each card says its figures come from, and what had to be inferred:", ""]
    for r in results:
        if not r.get("untied"):
            extra = f" Inferred / note: {r['note']}." if r.get("note") else ""
            lines.append(f"- `{r['card']}` ({r['runner']}): {r['source']}.{extra}")
        if r.get("error"):
            lines.append(f"  - did not run: `{r['error'][-300:]}`")
    lines += ["", "## Every compared value", "",
              "| card | key in the card | card value | reproduced | match | largest diff |", "|---|---|---|---|---|---|"]
    for r in results:
        for row in r.get("rows", []):
            diff = "—" if row["diff"] is None else f"{row['diff']:.2g}"
            got = row.get("why") or _fmt(row["got"])
            lines.append(f"| `{r['card']}` | `{row['key']}` | {_fmt(row['card_value'])} | {got} | "
                         f"{'✔' if row['match'] else '✘'} | {diff} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="ID", help="only these card ids")
    ap.add_argument("--work", default="/tmp/spine_repro_cache", help="cache folder for phantom data and reports")
    ap.add_argument("--out", help="output stem (.md and .json); default docs/reproduce_cards, which --only may not "
                                  "overwrite (its table would lose every other card's row)")
    ap.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                    help="stop one evaluation after this long and record it as not run (default: no limit)")
    ap.add_argument("--reuse-reports", action="store_true",
                    help="compare the reports an earlier (interrupted) run left in --work instead of re-evaluating; "
                         "only for resuming a run of the same code: a refactor needs a fresh run")
    args = ap.parse_args(argv)
    if args.only and not args.out:
        ap.error("--only checks some cards: give --out STEM (docs/reproduce_cards is the table of every card)")
    args.out = args.out or str(REPO / "docs" / "reproduce_cards")
    ids = {p.stem for p in WEIGHTS.glob("*.json")}
    if args.only:
        unknown = sorted(set(args.only) - ids)
        if unknown:
            sys.stderr.write(f"reproduce_cards: unknown card id(s) {', '.join(unknown)}; shipped: {', '.join(sorted(ids))}\n")
            return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    shown_argv = sys.argv[1:] if argv is None else argv
    t_all = time.time()
    for check in CHECKS:
        if args.only and check.card not in args.only:
            continue
        if isinstance(check, Untied):
            results.append({"card": check.card, "untied": True, "why": check.why, "needs": check.needs, "rows": []})
            continue
        print(f"{check.card} ({check.runner}) ...", file=sys.stderr, flush=True)
        try:
            rec = run_check(check, work, reuse=args.reuse_reports, timeout=args.timeout)
        except RuntimeError as e:  # a data command failed: recorded, the other cards still run
            rec = {"card": check.card, "runner": check.runner, "source": check.source, "note": check.note,
                   "data_commands": [], "data_seconds": 0.0, "error": str(e), "rows": []}
        secs = rec.get("eval_seconds")
        print(f"  {_status(rec)} (data {rec['data_seconds']:.0f} s, eval {'?' if secs is None else f'{secs:.0f}'} s)",
              file=sys.stderr, flush=True)
        results.append(rec)
        write_outputs(results, Path(args.out), shown_argv, time.time() - t_all)  # partial results survive an interrupt
    covered = {c.card for c in CHECKS}
    for missing in sorted(ids - covered):
        if not args.only or missing in args.only:
            results.append({"card": missing, "untied": True, "why": "no entry in CHECKS", "rows": [],
                            "needs": "an entry naming the data command and evaluation its card figures come from"})
    write_outputs(results, Path(args.out), shown_argv, time.time() - t_all)
    return 0 if all(_status(r) == "✔" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
