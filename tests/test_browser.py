"""Real browser: Debian's chromium driven by Playwright against `streamlit run app.py` on a free port.

Uploads a PNG and a DICOM film on the Analyse X-ray page, checks that every model's results appear and
that no identifying DICOM field is shown, visits the other pages, and saves screenshots under
test-artifacts/ (gitignored). Skips with a reason when /usr/bin/chromium or playwright is absent.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from app_fixtures import (browser_page, dicom_bytes, film, make_weights, png_bytes, require_browser,  # noqa: E402
                          shot, streamlit_server)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    require_browser()
    tmp = tmp_path_factory.mktemp("browser")
    files = {"png": tmp / "film.png", "dcm": tmp / "film.dcm"}
    files["png"].write_bytes(png_bytes(film(256, 128)))
    files["dcm"].write_bytes(dicom_bytes(film(256, 128, seed=2)))
    with streamlit_server(tmp, make_weights(tmp / "weights")) as url:
        yield url, files


@pytest.fixture(scope="module")
def page(server):
    with browser_page() as pg:
        yield pg


def _upload_and_wait(page, path: Path) -> None:
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.get_by_text("model(s) ran in").wait_for(timeout=90_000)
    page.get_by_text("tiny-seg · segment").wait_for(timeout=30_000)


def test_upload_png_and_dicom_show_results(server, page) -> None:
    url, files = server
    page.goto(url)
    page.get_by_text("Analyse X-ray").first.wait_for(timeout=60_000)
    page.get_by_text("Device:").wait_for(timeout=30_000)
    shot(page, "01-start")
    _upload_and_wait(page, files["png"])
    # findings first, each from a labelled model; the per-model sections below are collapsed
    for head in ("Findings", "Scoliosis:", "phantom-trained — not validated on real films", "tiny-cls · classify",
                 "tiny-det · detect", "Clinician report (HTML)"):
        page.get_by_text(head).first.wait_for(timeout=30_000)
    page.get_by_text("tiny-cls · classify").first.click()  # open one section: its probabilities and map
    for head in ("Prediction:", "Grad-CAM", "calls the class with the largest probability"):
        page.get_by_text(head).first.wait_for(timeout=30_000)
    shot(page, "02-png-results")
    with page.expect_download(timeout=90_000) as dl:  # the PDF is built when clicked, without a rerun
        page.get_by_text("Clinician report (PDF)").first.click()
    pdf = Path(dl.value.path()).read_bytes()
    assert pdf[:5] == b"%PDF-" and b"Doe" not in pdf

    _upload_and_wait(page, files["dcm"])
    page.get_by_text("Window / level").wait_for(timeout=30_000)
    page.get_by_text("Image header (de-identified)").click()
    page.wait_for_timeout(500)
    body = page.inner_text("body")
    assert "Doe" not in body and "Jane" not in body
    assert "DICOM" in body
    shot(page, "03-dicom-results")


def test_bad_upload_shows_error_inline(server, page, tmp_path: Path) -> None:
    url, _ = server
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.goto(url)
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_text("not an image").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.inner_text("body")
    shot(page, "04-bad-upload")


@pytest.mark.parametrize("path,text", [("models", "tiny-seg"), ("train", "Start training"), ("compare", "Evaluate"),
                                       ("mri", "Choose a study")])
def test_other_pages_render(server, page, path: str, text: str) -> None:
    url, _ = server
    page.goto(f"{url}/{path}")
    page.get_by_text(text).first.wait_for(timeout=60_000)
    assert "Traceback" not in page.inner_text("body")
    shot(page, f"05-page-{path}")
