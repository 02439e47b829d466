"""Faults (issue 17): a full disk while a checkpoint, weight file, history or card is written leaves the previous one
intact; ``kill -9`` of a training job mid-epoch -> the job store marks it failed with its last log lines, its last
checkpoint loads and ``JobStore.resume`` continues it to the end; ``kill -9`` of the server (the process that owns
the store and started the job) -> after a restart the job is reported correctly.

The kill tests run real processes (a tiny network on 64 px films): marked slow, a few tens of seconds each.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from spine_models.engine.jobs import JobStore, read_progress  # noqa: E402
from spine_models.engine.trainer import EarlyStopping, load_checkpoint, save_checkpoint, write_json  # noqa: E402
from spine_models.models.cards import ModelCard, save_checkpoint_file  # noqa: E402
from test_jobs import wait_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _full_disk_after(n_bytes: int):
    """A writer that puts ``n_bytes`` into the file, then fails as a full disk does."""
    def write(path: Path | str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[:n_bytes])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return write


# ------------------------------------------------------------------------------------------ full disk
def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    model = torch.nn.Linear(4, 2)
    last = tmp_path / "last.pt"
    kw = dict(model=model, optimizer=None, scheduler=None, early=EarlyStopping(), history=[{"epoch": 1}], cfg={"a": 1})
    save_checkpoint(last, epoch=0, **kw)
    before = last.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        import io

        buf = io.BytesIO()
        real_save(obj, buf)
        _full_disk_after(100)(f, buf.getvalue())

    monkeypatch.setattr(torch, "save", full_disk)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(last, epoch=1, **kw)
    assert last.read_bytes() == before and load_checkpoint(last)["epoch"] == 0
    with pytest.raises(OSError, match="No space left"):  # a shipped weight file the same way
        save_checkpoint_file(tmp_path / "model.pt", arch="x", task="classify", state_dict=model.state_dict())
    assert not (tmp_path / "model.pt").exists() and not list(tmp_path.glob(".model.pt.*"))  # nor its temp file


def test_full_disk_while_writing_a_card_or_history_keeps_the_previous_one(tmp_path, monkeypatch):
    card = ModelCard(id="c", task="classify", arch="resnet18", view="ap", trained_on="t", weights="weights/c.pt",
                     sha256="0" * 64, input_size=64, train_command="", license="test", classes=["normal", "scoliosis"])
    path = tmp_path / "card.json"
    card.to_json(path)
    write_json(tmp_path / "history.json", [{"epoch": 1}])
    before_card, before_hist = path.read_text(), (tmp_path / "history.json").read_text()

    def full_disk(self, text, *a, **k):
        _full_disk_after(10)(self, text.encode())

    monkeypatch.setattr(Path, "write_text", full_disk)
    card.metrics = {"accuracy": 0.9}
    with pytest.raises(OSError, match="No space left"):
        card.to_json(path)
    with pytest.raises(OSError, match="No space left"):
        write_json(tmp_path / "history.json", [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    assert path.read_text() == before_card and ModelCard.from_json(path).id == "c"
    assert (tmp_path / "history.json").read_text() == before_hist
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".card.json")]  # the card's temp file is gone


# ------------------------------------------------------------------------------------------ kill -9
TINY = {"task": "classify", "model": "spinenet_tiny", "imgsz": 64, "batch": 4, "eval_resamples": 20,
        "leakage_check": False}
EPOCHS = 5


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    from test_jobs import make_class_folders

    return make_class_folders(tmp_path / "data", n=40)


def _epochs(run_dir: Path) -> list[int]:
    return [int(r["epoch"]) for r in json.loads((run_dir / "history.json").read_text())]


@pytest.mark.slow
def test_kill_9_mid_epoch_then_failed_with_log_checkpoint_loads_and_resume_finishes(tmp_path, data_dir):
    store = JobStore(tmp_path / "runs")
    job_id = store.submit({**TINY, "data": [str(data_dir)], "epochs": EPOCHS})
    job = store.get(job_id)
    last = job.run_dir / "last.pt"
    # mid-epoch: the first epoch is saved and the next one has started (its start is written at once; steps are
    # written at most every 0.5 s, so a fast epoch may show none)
    wait_for(lambda: last.is_file() and read_progress(job.run_dir).get("epoch", 0) >= 1, 240, "epoch 2 to start")
    os.killpg(store.get(job_id).pid, signal.SIGKILL)
    wait_for(lambda: store.tick() and store.get(job_id).status != "running", 30, "the store to see the kill")
    failed = store.get(job_id)
    assert failed.status == "failed", failed.status
    assert "ended without a result" in failed.error and "spine-models train" in failed.error  # its last log lines
    ckpt = load_checkpoint(last)  # the last checkpoint is whole: it loads
    done_epochs = int(ckpt["epoch"]) + 1
    assert 1 <= done_epochs < EPOCHS and [int(r["epoch"]) for r in ckpt["history"]] == list(range(1, done_epochs + 1))
    resumed = store.resume(job_id)
    assert resumed.status == "running" and "--resume" in resumed.argv
    final = store.wait(job_id, timeout=300)
    assert final.status == "done", final.error
    assert f"resumed from {last} after epoch {done_epochs}" in final.log_path.read_text()
    assert _epochs(final.run_dir) == list(range(1, EPOCHS + 1))  # continued, not restarted
    assert store.card_path(job_id) is not None


SERVER = """
import sys, time
from spine_models.engine.jobs import JobStore
store = JobStore(sys.argv[1])
job_id = store.submit({cfg})
print(job_id, flush=True)
while True:
    store.tick()
    time.sleep(0.2)
"""


@pytest.mark.slow
def test_kill_9_of_the_server_during_a_job_is_reported_after_restart(tmp_path, data_dir):
    runs = tmp_path / "runs"
    cfg = {**TINY, "data": [str(data_dir)], "epochs": 3}
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(cfg=repr(cfg)), str(runs)], stdout=subprocess.PIPE,
                              env=env, text=True)
    try:
        job_id = server.stdout.readline().strip()
        assert job_id, "the server did not submit its job"
        store = JobStore(runs)
        wait_for(lambda: read_progress(store.get(job_id).run_dir).get("step"), 240, "the job to train")
        server.kill()  # kill -9 of the server; the job runs in its own session and goes on
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    restarted = JobStore(runs)  # the app comes back
    restarted.tick()
    job = restarted.get(job_id)
    assert job.status == "running" and job.pid  # still training: reported running, not failed
    final = restarted.wait(job_id, timeout=300)
    assert final.status == "done", final.error
    assert _epochs(final.run_dir) == [1, 2, 3]


def test_resume_needs_a_stopped_job_with_a_checkpoint(tmp_path, data_dir):
    from spine_models.engine.jobs import argv_to_config
    from spine_models.errors import SpineInputError

    store = JobStore(tmp_path / "runs")
    job_id = store.submit({**TINY, "data": [str(data_dir)], "epochs": 2}, start=False)
    with pytest.raises(SpineInputError, match="only a failed or cancelled job"):
        store.resume(job_id)
    store.cancel(job_id)
    with pytest.raises(SpineInputError, match="last.pt is missing"):
        store.resume(job_id)
    assert argv_to_config([*store.get(job_id).argv, "--resume"])["resume"] is True
    assert argv_to_config(store.get(job_id).argv)["resume"] is False
