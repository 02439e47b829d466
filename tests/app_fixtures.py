"""Helpers for the app tests: tiny random-weight shipped models and phantom-like films (no training)."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"  # browser screenshots (gitignored), kept as test artefacts
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def make_weights(folder: Path, *, detect: bool = True) -> Path:
    """weights/ with spinenet_tiny (classify), unet_tiny (segment) and, optionally, yolov8n (detect) cards."""
    from spine_models.models.cards import ModelCard, save_checkpoint_file
    from spine_models.models.registry import create_model

    folder.mkdir(parents=True, exist_ok=True)
    specs = [
        ("tiny-cls", "classify", "spinenet_tiny", {"num_classes": 3, "in_chans": 1}, 64,
         {"classes": ["normal", "scoliosis", "spondylolisthesis"]}),
        ("tiny-seg", "segment", "unet_tiny", {"num_classes": 3, "in_chans": 1}, [64, 32],
         {"structures": ["vertebra", "spinous_process", "pedicle"], "view": "ap"}),
        ("tiny-disc", "classify", "spinenet_tiny", {"num_classes": 4, "in_chans": 1}, 64,
         {"classes": ["normal", "degeneration", "bulge", "herniation"], "view": "mri", "preprocessing": {"roi": True}}),
    ]
    if detect:
        specs.append(("tiny-det", "detect", "yolov8n", {"nc": 2}, 128, {"classes": ["lumbar_implant", "scoliosis"],
                                                                    "thresholds": {"score": 0.01}}))
    for mid, task, arch, kw, size, extra in specs:
        import torch

        torch.manual_seed(0)
        model = create_model(arch, task=task, **kw)
        sha = save_checkpoint_file(folder / f"{mid}.pt", arch=arch, task=task, state_dict=model.state_dict(), arch_kwargs=kw)
        card = ModelCard(id=mid, task=task, arch=arch, view=extra.pop("view", "any"), trained_on="random init (test)",
                         weights=str((folder / f"{mid}.pt").resolve()), sha256=sha, input_size=size,
                         train_command="(test fixture)", license="research-only", arch_kwargs=kw,
                         metrics={"accuracy": {"value": 0.5, "ci95": [0.4, 0.6]}}, limitations=["random weights"], **extra)
        card.to_json(folder / f"{mid}.json")
    return folder


def film(h: int = 128, w: int = 64, seed: int = 0) -> np.ndarray:
    """A phantom-like portrait film: a column of bright vertebral blocks on a dark background, uint16."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.15, 0.03, (h, w))
    for k in range(6):
        y0 = 8 + k * (h - 16) // 6
        x0 = w // 2 - w // 6 + int(3 * np.sin(k))
        a[y0:y0 + (h - 16) // 8, x0:x0 + w // 3] = 0.8
    return (np.clip(a, 0, 1) * 65535).astype(np.uint16)


def png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def dicom_bytes(arr: np.ndarray) -> bytes:
    """A DX DICOM of the film with a patient name (which must never be shown)."""
    import tempfile

    from spine_models.io import make_dicom

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "film.dcm"
        make_dicom(arr, p, modality="DX", patient_name="Doe^Jane", pixel_spacing=(0.5, 0.5), view_position="AP")
        return p.read_bytes()


def sections(at) -> list[str]:
    """Analyse X-ray's per-model sections ("<model id> · <task>"), from their collapsed expanders."""
    return [e.label.split(" — ")[0] for e in at.expander if " · " in e.label.split(" — ")[0]]


def new_app(page: str | None = None):
    """The app run once (and switched to ``page``), with no exception raised: the start of every app test."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def point_app_at(weights: Path, tmp_path: Path, monkeypatch) -> Path:
    """Point the app at test weights and at a private runs/cache folder (nothing touches the repo's)."""
    monkeypatch.setenv("SPINE_MODELS_WEIGHTS", str(weights))
    monkeypatch.setenv("SPINE_MODELS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SPINE_MODELS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def make_disc_weights(folder: Path, members: int = 1) -> Path:
    """weights/ with a random-init disc locator (unet_tiny; disc, disc_caudal) and a disc grader composite on it."""
    import torch

    from spine_models.models.cards import ModelCard, save_checkpoint_file
    from spine_models.models.registry import create_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    kw = {"num_classes": 2, "in_chans": 1}
    sha = save_checkpoint_file(folder / "tiny-disc-loc.pt", arch="unet_tiny", task="segment",
                               state_dict=create_model("unet_tiny", task="segment", **kw).state_dict(), arch_kwargs=kw)
    loc = ModelCard(id="tiny-disc-loc", task="segment", arch="unet_tiny", view="mri", trained_on="random init (test)",
                    weights=str((folder / "tiny-disc-loc.pt").resolve()), sha256=sha, input_size=[64, 64],
                    train_command="(test fixture)", license="research-only", arch_kwargs=kw,
                    structures=["disc", "disc_caudal"], thresholds={"mask": 0.5})
    loc.to_json(folder / "tiny-disc-loc.json")
    gkw = {"locator": str(folder / "tiny-disc-loc.json"), "locator_sha256": sha,
           "findings": ["herniation", "bulging", "narrowing"], "width": 4, **({"members": members} if members > 1 else {})}
    gsha = save_checkpoint_file(folder / "tiny-disc-grader.pt", arch="disc_grading", task="segment",
                                state_dict=create_model("disc_grading", task="segment", findings=gkw["findings"], width=4,
                                                        members=members).state_dict(),
                                arch_kwargs=gkw)
    ModelCard(id="tiny-disc-grader", task="segment", arch="disc_grading", view="mri", trained_on="random init (test)",
              weights=str((folder / "tiny-disc-grader.pt").resolve()), sha256=gsha, input_size=[64, 128],
              train_command="(test fixture)", license="research-only", arch_kwargs=gkw,
              structures=["disc", "disc_caudal"], thresholds={"herniation": 0.5, "bulging": 0.5, "narrowing": 0.5}
              ).to_json(folder / "tiny-disc-grader.json")
    return folder


# ------------------------------------------------------------------------------ real browser (Playwright)
def require_browser() -> None:
    """Skip (with the reason) when Debian's chromium or the playwright package is absent: the browser tests need both."""
    import pytest

    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium (apt-get install chromium) to run the browser test")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(tmp: Path, weights: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free port with ``weights`` as weights/ and private runs/cache folders under ``tmp``;
    yields its URL once healthy, stops it after. Why one helper: every browser test module starts the same server."""
    import pytest

    port = _free_port()
    env = dict(os.environ, SPINE_MODELS_WEIGHTS=str(weights), SPINE_MODELS_RUNS=str(tmp / "runs"),
               SPINE_MODELS_CACHE=str(tmp / "cache"), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log_path = tmp / "streamlit.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                        break
                except OSError:
                    time.sleep(0.3)
            else:
                pytest.fail(f"streamlit did not become healthy in 60 s; log: {log_path.read_text()[-2000:]}")
            yield url
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=20)


@contextmanager
def browser_page() -> Iterator[Any]:
    """One headless chromium page (tall viewport: whole pages fit one screenshot)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 2600})
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    """A full-page screenshot under test-artifacts/, after Streamlit has finished drawing."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1500)  # let Streamlit finish drawing the rest of the page
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
