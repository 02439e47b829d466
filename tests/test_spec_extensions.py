"""docs/spec_extensions.md lists what the repository adds to SPEC.md: each command line option and key it names exists."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from spine_models.cli import main

REPO = Path(__file__).resolve().parents[1]


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


def test_the_commands_and_options_listed_exist(capsys) -> None:
    text = (REPO / "docs" / "spec_extensions.md").read_text()
    assert "--out" in _help("predict", capsys) and "--nproc" in _help("train", capsys)
    for command in ("compare", "export-frames"):
        assert f"`spine-models {command}" in text and _help(command, capsys)


def test_the_card_keys_and_library_options_listed_exist() -> None:
    import dataclasses

    from spine_models.data.leakage import check_leakage  # noqa: F401  (named in the doc)
    from spine_models.io import read_image, read_image_bytes
    from spine_models.io.study import scan_studies
    from spine_models.models.cards import ModelCard

    fields = {f.name for f in dataclasses.fields(ModelCard)}
    assert {"runtime", "sources", "preprocessing", "audit"} <= fields
    assert {"problems", "show_names"} <= set(inspect.signature(scan_studies).parameters)
    assert "draft" in inspect.signature(read_image).parameters and "draft" in inspect.signature(read_image_bytes).parameters
    shipped = [json.loads(p.read_text()) for p in (REPO / "weights").glob("*.json")]
    assert all("runtime" in c for c in shipped)


def test_the_centreline_result_keys_listed_exist() -> None:
    """``measurements.cobb.centreline_deg`` / ``centreline``: written by the corner composite, read by the call."""
    import numpy as np

    from spine_models.engine.landmarks import with_centreline
    from spine_models.report.findings import cobb_call  # noqa: F401  (named in the doc)

    text = (REPO / "docs" / "spec_extensions.md").read_text()
    assert "`measurements.cobb.centreline_deg`" in text and "`centreline_degree`" in text
    bodies = {f"B{i:02d}": np.array([[0, 50 * i], [40, 50 * i], [40, 50 * i + 30], [0, 50 * i + 30]], float) for i in range(8)}
    got = with_centreline({"cobb_deg": 3.0, "reliable": True, "curves": []}, bodies, 3)
    assert {"centreline_deg", "centreline"} <= set(got) and got["centreline_deg"] < 1.0
