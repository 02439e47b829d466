"""`spine-models info`: the SPEC JSON, and the issue's acceptance film prints size and spacing only."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from spine_models.io.dicom_build import leaked_tokens, make_identified_cr


def _info(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spine_models.cli", "info", *args], capture_output=True, text=True, timeout=60)


def test_info_identified_cr(tmp_path):
    make_identified_cr(tmp_path / "cr.dcm")
    done = _info(str(tmp_path / "cr.dcm"), "--header")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {k: out[k] for k in ("format", "kind", "width", "height", "bits", "photometric", "pixel_spacing_mm", "frames")} == {
        "format": "DICOM", "kind": "xray", "width": 64, "height": 96, "bits": 12, "photometric": "MONOCHROME1",
        "pixel_spacing_mm": [0.15, 0.15], "frames": 1,
    }
    assert leaked_tokens(done.stdout + done.stderr) == []


def test_info_png_and_study(tmp_path):
    Image.fromarray(np.zeros((40, 50), np.uint16)).save(tmp_path / "x.png")
    out = json.loads(_info(str(tmp_path / "x.png")).stdout)
    assert (out["width"], out["height"], out["bits"], out["pixel_spacing_mm"], out["kind"]) == (50, 40, 16, None, "xray")
    make_identified_cr(tmp_path / "study" / "1.dcm")
    study = json.loads(_info(str(tmp_path / "study")).stdout)
    assert study["format"] == "DICOM-STUDY" and study["series"][0]["frames"] == 1
