"""The Train page: the form queues a tiny job that runs to completion (curves, log, promote) and a second
job is cancelled from its Cancel button; the job store is the real one (SQLite + subprocesses)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_jobs import make_class_folders  # noqa: E402

from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def fill_form(at: AppTest, data: Path, epochs: int) -> None:
    at.selectbox(key="train_task").set_value("classify").run()
    at.selectbox(key="train_arch").set_value("spinenet_tiny")
    at.text_input(key="train_data").input(str(data))
    at.number_input(key="train_epochs").set_value(epochs)
    at.number_input(key="train_imgsz").set_value(64)
    at.text_area(key="train_extra").input("eval_resamples: 20\nleakage_check=false")


@pytest.mark.slow
def test_train_page_runs_a_job_and_cancels_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spine_models.engine.jobs import JobStore

    monkeypatch.setenv("SPINE_MODELS_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("SPINE_MODELS_RUNS", str(tmp_path / "runs"))
    data = make_class_folders(tmp_path / "data")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/train.py").run()
    assert any("No jobs yet" in i.value for i in at.info)

    # a bad setting is refused inline, nothing queued
    fill_form(at, data, 1)
    at.text_area(key="train_extra").input("no_such_setting=1")
    at.button[0].click().run()
    assert not at.exception and len(at.error) == 1 and "no_such_setting" in at.error[0].value

    fill_form(at, data, 1)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = JobStore(tmp_path / "runs")
    (first,) = store.list()
    assert any(t.value.startswith(f"Job {first.id} queued: ") for t in at.toast)  # a toast: it does not linger
    assert any("Split too small for a meaningful figure" in w.value for w in at.warning)  # a few films per part
    assert store.wait(first.id, timeout=240).status == "done"
    at.run()
    assert any(e.label == f"{first.id} — done" for e in at.expander)
    assert at.get("plotly_chart"), "metric curves of the finished job missing"
    assert any("metric (95% CI)" in str(t.value) for t in at.table)  # the finished run's card figures stay shown

    # a long second job, cancelled from the page
    fill_form(at, data, 200)
    at.button[0].click().run()
    second = next(j for j in store.list() if j.id != first.id)
    assert store.get(second.id).status == "running"
    at.button(key=f"cancel_{second.id}").click().run()
    assert store.get(second.id).status == "cancelled"
    assert any(e.label == f"{second.id} — cancelled" for e in at.expander)

    # promote the finished run to weights/ and see it in the sidebar
    at.button(key=f"promote_{first.id}").click().run()
    assert not at.error and "Promoted" in at.success[-1].value
    assert (tmp_path / "weights" / f"{first.id}.json").is_file()
    at.switch_page("pages/models.py").run()
    assert not at.exception
    assert [e.label.split(" — ")[0] for e in at.expander] == [first.id]
