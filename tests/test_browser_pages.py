"""Real browser on the pages other than Analyse X-ray (issue 16, item 11): Debian's chromium driven by Playwright
against `streamlit run app.py` with tiny random-weight models (X-ray, disc locator + grader, a second classifier).

MRI study (a made sagittal slice and the phantom DICOM study), Compare models (the default pair on a generated
phantom set), Models (every card's badge and credits) and Train (the form and its small-split warning) are each
driven as a user would, asserting on visible text; a full-page screenshot of each is kept under test-artifacts/.
Skips with a reason when /usr/bin/chromium or playwright is absent. Why: AppTest (test_app.py) never renders the
page, so a widget the browser cannot reach or a panel that never draws would pass there.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from app_fixtures import (browser_page, make_disc_weights, make_weights, png_bytes, require_browser,  # noqa: E402
                          shot, streamlit_server)
from test_jobs import make_class_folders  # noqa: E402
from test_spider_discs import _slice  # noqa: E402

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the server fixture skips every test then
    PlaywrightTimeout = TimeoutError

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGE_TIMEOUT = 120_000  # ms: the most any one page's work may take


def _weights(folder: Path) -> Path:
    """X-ray models (no detector: ultralytics is not needed here), the disc locator + grader, and a second classifier
    with tiny-cls's classes so Compare has a default pair; that one's card says it was validated on real films and
    credits its data source, so the Models page shows both kinds of badge and a credit line."""
    make_weights(folder, detect=False)
    make_disc_weights(folder)
    card = json.loads((folder / "tiny-cls.json").read_text())
    card["id"] = "tiny-cls-b"
    card["validated_on"] = [{"data": "made-real-films", "real": True,
                             "metrics": {"balanced_accuracy": {"value": 0.81, "ci95": [0.7, 0.9]}}}]
    card["sources"] = [{"data": "made-real-films", "license": "CC BY 4.0", "credit": "Test Hospital imaging archive"}]
    (folder / "tiny-cls-b.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One app server for the module (a start costs seconds): its URL, the files to upload, the card ids."""
    require_browser()
    tmp = tmp_path_factory.mktemp("browser_pages")
    weights = _weights(tmp / "weights")
    img, _ = _slice(np.random.default_rng(1))
    files = {"slice": tmp / "Doe_Jane_sag.png", "train": make_class_folders(tmp / "train_data")}
    files["slice"].write_bytes(png_bytes(img))
    with streamlit_server(tmp, weights) as url:
        yield url, files, sorted(p.stem for p in weights.glob("*.json"))


@pytest.fixture(scope="module")
def page(server: Any) -> Any:
    """One chromium page for the module; each test starts a fresh session by navigating."""
    with browser_page() as pg:
        yield pg


def _open(page: Any, url: str, title: str) -> None:
    """Open a page from the sidebar of a fresh session, as a new user would, and wait for its title (deep links have
    their own test: test_first_deep_link_after_start_has_no_page_not_found)."""
    page.goto(url)
    page.get_by_role("heading", name="Analyse X-ray").first.wait_for(timeout=60_000)
    page.get_by_test_id("stSidebar").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)


def _see(page: Any, *texts: str, timeout: int = 30_000) -> None:
    """Wait until each text is on the page: Streamlit draws asynchronously, so a plain read could miss it."""
    for t in texts:
        page.get_by_text(t).first.wait_for(timeout=timeout)


def _no_traceback(page: Any) -> None:
    """No uncaught exception drawn anywhere on the page (Streamlit shows them inline, the test would not notice)."""
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error running app" not in body


def _choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


# ------------------------------------------------------------------------------------------- MRI study
def test_mri_sagittal_slice_shows_disc_panel_and_badge(server: Any, page: Any) -> None:
    """An uploaded sagittal slice: the disc panel and, for a phantom-only model, the warning badge; no file name."""
    url, files, _ = server
    _open(page, url, "MRI study")
    page.get_by_text("Sagittal slice (PNG/JPG/DICOM)").click()
    _see(page, "Choose a sagittal slice to start.")
    page.locator("input[type=file]").first.set_input_files(str(files["slice"]))
    _see(page, "disc(s) found by tiny-disc-grader", timeout=PAGE_TIMEOUT)
    # a phantom-only model on an upload says so in a warning under its result (not only in the model picker)
    warning = page.get_by_test_id("stAlertContainer").filter(has_text="phantom-trained — not validated on real images")
    warning.first.wait_for(timeout=30_000)
    _no_traceback(page)
    uploader = page.get_by_test_id("stFileUploader").first.inner_text()  # the upload step itself lists the file
    assert "Doe" not in page.inner_text("body").replace(uploader, "")  # the file name is not kept past it
    shot(page, "pages-01-mri-slice")


def test_mri_phantom_study_shows_frame_selection_and_discs(server: Any, page: Any) -> None:
    """The phantom DICOM study: frame choice per level, the sagittal frame with slice lines, discs and disc states."""
    url, _, _ = server
    _open(page, url, "MRI study")
    page.get_by_text("Phantom example").click()  # the study generated here: a phantom label, no warning
    _see(page, "Frame selection per disc level", timeout=PAGE_TIMEOUT)
    _see(page, "Discs on the mid-sagittal frame", "disc(s) found by tiny-disc-grader", "Disc state per level",
         "the chosen mid-sagittal frame with the", timeout=PAGE_TIMEOUT)
    badge = page.get_by_test_id("stCaptionContainer").filter(has_text="phantom-trained — not validated on real images")
    badge.first.wait_for(timeout=30_000)  # the phantom label as a caption under the disc panel
    _no_traceback(page)
    shot(page, "pages-02-mri-phantom-study")


# ------------------------------------------------------------------------------------------- Compare
def test_compare_default_pair_on_phantom_set(server: Any, page: Any) -> None:
    """The compatible default pair evaluated on a phantom set made on the page: matrices, measures, small-n caveat."""
    url, _, _ = server
    _open(page, url, "Compare models")
    chips = page.get_by_test_id("stMultiSelect").first
    chips.get_by_text("tiny-cls-b").wait_for(timeout=30_000)  # the default pair: two classifiers with the same classes
    assert {"tiny-cls", "tiny-cls-b"} <= set(chips.inner_text().split()) and "tiny-disc" not in chips.inner_text()
    page.get_by_role("button", name="Generate / use phantom data").click()
    _see(page, "Data: ", timeout=PAGE_TIMEOUT)
    page.get_by_role("button", name="Evaluate").click()
    _see(page, "Measures (95% CI)", timeout=PAGE_TIMEOUT)
    _see(page, "patients: the 95% CIs below are wide and unstable", "McNemar (paired, same images)",
         "Where the models disagree", "Measures CSV")
    page.locator(".js-plotly-plot").nth(1).wait_for(timeout=30_000)  # a confusion matrix per model
    assert page.get_by_test_id("stDataFrame").count() >= 1  # the measures table
    _no_traceback(page)
    shot(page, "pages-03-compare")


# ------------------------------------------------------------------------------------------- Models
def test_models_page_lists_every_card_with_badge_and_credits(server: Any, page: Any) -> None:
    """Every card in weights/ listed; opened, each shows its validation badge and its credits line."""
    url, _, ids = server
    _open(page, url, "Models")
    for mid in ids:
        summary = page.locator("summary").filter(has_text=f"{mid} — ").first
        summary.wait_for(timeout=30_000)
        summary.click()
    page.wait_for_timeout(1000)
    body = page.inner_text("body")
    assert body.count("Validation:") == len(ids), body
    assert body.count("Credits") == len(ids), body
    assert "phantom-trained — not validated on real films" in body  # X-ray cards
    assert "phantom-trained — not validated on real images" in body  # MRI cards
    assert "Validation: validated on real films: made-real-films (" in body  # the real-validated badge with its figure
    assert "made-real-films — CC BY 4.0: Test Hospital imaging archive" in body  # its credit line
    assert "tiny-cls-b — classify, spinenet_tiny, view any · validated on real films" in body
    _no_traceback(page)
    shot(page, "pages-04-models")


# ------------------------------------------------------------------------------------------- Train
def test_train_form_warns_on_a_too_small_split(server: Any, page: Any) -> None:
    """The form filled and submitted on 12 films: the small-split warning shows; the 1-epoch job is then cancelled."""
    url, files, _ = server
    _open(page, url, "Train")
    _see(page, "No jobs yet.", "Start training")
    _choose(page, "Architecture", "spinenet_tiny")
    page.get_by_label("Data (folder, ZIP", exact=False).fill(str(files["train"]))
    page.get_by_label("Epochs").fill("1")
    page.get_by_label("Image size (px)").fill("64")
    page.get_by_label("More settings", exact=False).fill("eval_resamples: 20\nleakage_check=false")
    page.get_by_role("button", name="Start training").click()
    _see(page, "Split too small for a meaningful figure", timeout=60_000)
    shot(page, "pages-05-train-small-split")
    try:  # no job left behind: cancel it unless it has already finished
        page.get_by_role("button", name="Cancel").first.click(timeout=10_000)
    except PlaywrightTimeout:
        pass
    page.get_by_text(re.compile(r" — (cancelled|done)$")).first.wait_for(timeout=60_000)
    _no_traceback(page)


# ------------------------------------------------------------------------------------------- deep links
@pytest.mark.parametrize("path, title", [("mri", "MRI study"), ("compare", "Compare models")])
def test_first_deep_link_after_start_has_no_page_not_found(server: Any, page: Any, tmp_path: Path, path: str,
                                                           title: str) -> None:
    """A fresh server opened at a deep link by its first session: no "Page not found" dialog, and the page runs under
    the app's router (its sidebar and titles). Why it can fail: before the app's first run Streamlit only knows the
    pages/ files by name (so each page file is named as its url_path) and runs a deep-linked page file alone."""
    with streamlit_server(tmp_path, make_weights(tmp_path / "weights", detect=False)) as url:
        page.goto(f"{url}/{path}")
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        page.wait_for_timeout(2500)
        shot(page, f"pages-06-first-deep-link-{path}")
        assert not page.get_by_text("Page not found").count()
        # under app.py's router (ui.router.ensure_router), not Streamlit's pages/ folder: its titles and the sidebar
        side = page.get_by_test_id("stSidebar").inner_text()
        assert "Analyse X-ray" in side and "Device:" in side and "\nanalyse\n" not in f"\n{side}\n", side
