"""`spine-models synth`: argument handling, worker-count independence, difficulty levels, MRI dispatch."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spine_models.cli import main

SMALL = ["--size", "192x96", "--quiet"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["synth", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_kinds_and_options(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("xray-ap", "xray-lat", "mri-lumbar", "--difficulty", "--implant-fraction", "--size", "--seed"):
        assert word in text


def test_output_does_not_depend_on_worker_count(tmp_path: Path, capsys) -> None:
    manifests = []
    for workers in ("1", "2"):
        code, out, err = _run(capsys, "xray-lat", "--n", "6", "--seed", "3", "--out", str(tmp_path / workers),
                              "--workers", workers, *SMALL)
        assert code == 0, err
        summary = json.loads(out)
        assert summary["kind"] == "xray-lat" and summary["arguments"]["n"] == 6
        manifests.append(json.loads((tmp_path / workers / "MANIFEST.json").read_text()))
    assert manifests[0]["files"] == manifests[1]["files"]
    assert manifests[0]["generator_version"] and manifests[0]["seed"] == 3


def _noise(root: Path) -> float:
    """Median high-frequency energy of the films (noise + fine texture), in 16-bit units."""
    vals = []
    for f in sorted((root / "images").glob("*.png")):
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED).astype(np.float32)
        vals.append(float(np.median(np.abs(img - cv2.GaussianBlur(img, (0, 0), 1.5)))))
    return float(np.median(vals))


def test_difficulty_changes_noise_and_borderline_share(tmp_path: Path, capsys) -> None:
    for level in ("easy", "hard"):
        code, _, err = _run(capsys, "xray-ap", "--n", "24", "--seed", "9", "--out", str(tmp_path / level),
                            "--difficulty", level, "--implant-fraction", "0", *SMALL)
        assert code == 0, err
    assert _noise(tmp_path / "hard") > _noise(tmp_path / "easy")

    def borderline(level: str) -> int:
        with open(tmp_path / level / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert {r["difficulty"] for r in rows} == {level}
        return sum(5.0 <= float(r["cobb_deg"]) <= 15.0 for r in rows)

    assert borderline("hard") >= borderline("easy")


@pytest.mark.parametrize("args, words", [
    (["xray-ap", "--n", "2", "--seed", "1", "--size", "big"], "HEIGHTxWIDTH"),
    (["xray-ap", "--n", "2", "--seed", "1", "--size", "64x32"], "at least"),
    (["xray-ap", "--n", "2", "--seed", "1", "--difficulty", "brutal"], "difficulty"),
])
def test_bad_values_exit_2_naming_the_value(tmp_path: Path, capsys, args: list[str], words: str) -> None:
    try:
        code = main(["synth", *args, "--out", str(tmp_path / "o")])
    except SystemExit as exc:  # argparse rejects before run()
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1


def test_mri_lumbar_is_dispatched_and_refuses_a_full_folder(tmp_path: Path, capsys) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    code, _, err = _run(capsys, "mri-lumbar", "--n", "1", "--seed", "0", "--out", str(full), "--quiet")
    assert code == 2 and "not empty" in err
    code, out, err = _run(capsys, "mri-lumbar", "--n", "1", "--seed", "0", "--out", str(tmp_path / "mri"), "--quiet")
    assert code == 0, err
    assert (tmp_path / "mri" / "labels.csv").is_file() and (tmp_path / "mri" / "MANIFEST.json").is_file()
    assert list((tmp_path / "mri").rglob("*.dcm"))
