"""The persistent job store: a tiny training job runs to completion, another is cancelled, a job whose
process died is marked failed after a "restart", the queue holds jobs beyond max_concurrent, promote."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from spine_models.engine.jobs import JobStore, cfg_to_argv
from spine_models.errors import ConfigError, SpineInputError


def make_class_folders(root: Path, n: int = 6, size: int = 64) -> Path:
    """A tiny class-per-folder dataset: 2 classes x n 64 px PNGs, one patient each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("normal", "scoliosis"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = (rng.random((size, size)) * 120).astype(np.uint8)
            if c == "scoliosis":
                a[:, size // 3: 2 * size // 3] = 230
            Image.fromarray(a).save(root / c / f"{c}_{i}.png")
    return root


def _running(pid: int) -> bool:
    """True while pid exists and is not a zombie (a job started by another job's runner is reparented)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(cond, timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll ``cond`` until true; fail naming ``what`` after ``timeout`` seconds (jobs run in other processes)."""
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


TINY = {"task": "classify", "model": "spinenet_tiny", "epochs": 1, "imgsz": 64, "batch": 8,
        "eval_resamples": 20, "leakage_check": False}


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "data")


def test_cfg_to_argv_uses_flags_and_set() -> None:
    argv = cfg_to_argv({**TINY, "data": ["a", "b"], "normalization": {"kind": "imagenet"}}, "/tmp/x")
    assert argv[:6] == ["--task", "classify", "--data", "a", "--data", "b"]
    assert "--epochs" in argv and "--set" in argv and "leakage_check=false" in argv
    assert "normalization={kind: imagenet}" in argv
    with pytest.raises(ConfigError):
        cfg_to_argv({"task": "classify"}, "/tmp/x")


def test_submit_rejects_unknown_keys(tmp_path: Path, data_dir: Path) -> None:
    store = JobStore(tmp_path / "runs")
    with pytest.raises(ConfigError, match="no_such_key"):
        store.submit({**TINY, "data": [str(data_dir)], "no_such_key": 1})
    assert store.list() == []


@pytest.mark.slow
def test_job_runs_queue_cancel_and_promote(tmp_path: Path, data_dir: Path) -> None:
    store = JobStore(tmp_path / "runs", max_concurrent=1)
    a = store.submit({**TINY, "data": [str(data_dir)]})
    b = store.submit({**TINY, "data": [str(data_dir)], "epochs": 50})
    # FIFO with one slot: a runs, b waits
    assert store.get(a).status == "running" and store.get(b).status == "queued"
    done = store.wait(a, timeout=240)
    assert done.status == "done", done.error
    assert (done.run_dir / "log.txt").read_text().startswith("$ spine-models train --task classify")
    assert done.history() and done.history()[0]["epoch"] == 1
    assert store.card_path(a) is not None
    # b starts once a is done, then is cancelled: its process group is gone
    store.tick()
    jb = store.get(b)
    deadline = time.time() + 30
    while jb.status == "running" and not jb.pid and time.time() < deadline:  # a's runner records b's pid after the spawn
        time.sleep(0.1)
        jb = store.get(b)
    assert jb.status == "running" and jb.pid
    cancelled = store.cancel(b)
    assert cancelled.status == "cancelled"
    assert not _running(jb.pid)
    # promote a into a weights folder: card rewritten, sha256 of the copy
    wdir = tmp_path / "weights"
    card_json = store.promote(a, "tiny-cls", weights_dir=wdir)
    card = json.loads(card_json.read_text())
    from spine_models.models.cards import list_cards, sha256_file

    assert card["weights"] == "weights/tiny-cls.pt" and card["sha256"] == sha256_file(wdir / "tiny-cls.pt")
    assert [c.id for c in list_cards(wdir)] == ["tiny-cls"]
    with pytest.raises(SpineInputError, match="exists"):
        store.promote(a, "tiny-cls", weights_dir=wdir)
    assert [j for j, _ in store.finished_runs()][0].id == a


def test_restart_marks_dead_running_job_failed_with_log(tmp_path: Path, data_dir: Path) -> None:
    store = JobStore(tmp_path / "runs")
    job_id = store.submit({**TINY, "data": [str(data_dir)]}, start=False)
    job = store.get(job_id)
    job.log_path.write_text("epoch 1/3\nRuntimeError: out of memory\n")
    # pretend a previous app process started it and then everything died
    store._update(job_id, status="running", pid=2**22 + 12345, started=time.time())
    reopened = JobStore(tmp_path / "runs")
    reopened.tick()
    j = reopened.get(job_id)
    assert j.status == "failed"
    assert "out of memory" in j.error and "ended without a result" in j.error


def test_cancel_queued_job_never_starts(tmp_path: Path, data_dir: Path) -> None:
    store = JobStore(tmp_path / "runs")
    job_id = store.submit({**TINY, "data": [str(data_dir)]}, start=False)
    assert store.cancel(job_id).status == "cancelled"
    store.tick()
    assert store.get(job_id).status == "cancelled" and store.get(job_id).pid is None


def test_a_job_marked_running_but_not_spawned_yet_is_not_taken_for_dead(tmp_path: Path, data_dir: Path) -> None:
    """``tick`` marks a queued job running, then spawns it and records its pid; another process's tick in between (a
    finished job's runner starting the next one) must not settle it as failed. A job left without a pid for longer
    than SPAWN_GRACE_S (its spawner died) is failed."""
    from spine_models.engine.jobs import SPAWN_GRACE_S

    store = JobStore(tmp_path / "runs")
    job_id = store.submit({**TINY, "data": [str(data_dir)]}, start=False)
    store._update(job_id, status="running", pid=None, started=time.time())
    JobStore(tmp_path / "runs").tick()
    assert store.get(job_id).status == "running"
    store._update(job_id, started=time.time() - SPAWN_GRACE_S - 1)
    JobStore(tmp_path / "runs").tick()
    assert store.get(job_id).status == "failed" and "ended without a result" in store.get(job_id).error


def test_a_job_another_runner_is_starting_is_not_taken_for_dead(tmp_path: Path, data_dir: Path) -> None:
    """A runner starts the next queued job when its own ends; until the new process has exec'd it shows its parent's
    command line (a runner of the same store, another job id). Another process's tick must not mark that job failed,
    while a pid now used by an unrelated process still counts as dead (PID reuse after a restart)."""
    import subprocess
    import sys

    store = JobStore(tmp_path / "runs")
    job_id = store.submit({**TINY, "data": [str(data_dir)]}, start=False)
    # a process whose command line is that of a runner of this store for another job: the fork-to-exec window
    forked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "spine_models.engine.jobs",
                               "run", str(store.db_path), "job-that-ended"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store._update(job_id, status="running", pid=forked.pid, started=time.time())
        JobStore(tmp_path / "runs").tick()  # another process's store: the job is not one of its children
        assert store.get(job_id).status == "running"
        store._update(job_id, pid=other.pid)
        JobStore(tmp_path / "runs").tick()
        assert store.get(job_id).status == "failed" and "ended without a result" in store.get(job_id).error
    finally:
        for p in (forked, other):
            p.kill()
            p.wait()
