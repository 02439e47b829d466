"""A small persistent job store for background training runs (the app's Train page).

Why: training takes minutes to hours, a Streamlit script re-runs on every click, and the app may be
restarted while a run goes on. So each job is a row in SQLite (``runs/jobs.sqlite`` by default) and a
separate process in its own process group that trains as ``spine-models train`` would (the same flag
table and config merge, ``spine_models.config.train_config``, then the task engine's ``train``; the CLI
itself is not involved), plus a callback that writes ``progress.json``. Logs go to ``<run>/log.txt``; the
child writes ``<run>/result.json`` when it ends. At most ``max_concurrent`` jobs run (default 1); the
rest wait in a FIFO queue. :meth:`JobStore.tick` reconciles: finished jobs are marked done/failed, a
"running" job whose process is gone (e.g. after a crash or restart) is marked failed with its last log
lines, and queued jobs start while there is room. The runner calls ``tick`` when it ends, so the queue
advances even when no page is open.

    store = JobStore("runs")
    job_id = store.submit({"task": "classify", "model": "resnet18", "data": ["synth/"], "epochs": 3})
    store.tick(); store.get(job_id).status   # queued | running | done | failed | cancelled
    store.cancel(job_id)
    store.resume(job_id)                    # a failed / cancelled job continues from its last.pt
    store.promote(job_id)                   # copy model.pt + card into weights/
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from spine_models._atomic import atomic_write_text
from spine_models.config import TRAIN_FLAGS, TRAIN_MODES
from spine_models.engine.callbacks import Callback
from spine_models.errors import ConfigError, SpineInputError

__all__ = ["Job", "JobStore", "STATUSES", "cfg_to_argv", "argv_to_config", "default_runs_dir", "read_progress", "read_history",
           "tail", "ProgressFile"]

STATUSES = ("queued", "running", "done", "failed", "cancelled")
#: seconds a job marked running may go without a pid before a tick takes its start as failed: ``tick`` marks a job
#: running, then spawns it and records the pid; another process's tick in between (a finished job's runner starts the
#: next one) must not settle it as "ended without a result"
SPAWN_GRACE_S = 60.0
_RUNNER = "spine_models.engine.jobs"  # the runner module every job process runs (python -m ... run DB JOB)
# cfg keys that map to `spine-models train` flags; every other key goes through --set key=value
_FLAGS = tuple(TRAIN_FLAGS)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL,
    cfg TEXT NOT NULL,
    argv TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    pid INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    card TEXT
)"""


def default_runs_dir() -> Path:
    """``$SPINE_MODELS_RUNS`` or ``./runs`` (relative to the working directory, like the CLI's --out)."""
    return Path(os.environ.get("SPINE_MODELS_RUNS", "runs"))


@dataclass
class Job:
    """One row of the store."""

    id: str
    seq: int
    task: str
    status: str
    cfg: dict[str, Any]
    argv: list[str]
    run_dir: Path
    pid: int | None
    created: float
    started: float | None
    finished: float | None
    error: str | None
    card: str | None

    @property
    def command(self) -> str:
        return shlex.join(["spine-models", "train", *self.argv])

    @property
    def log_path(self) -> Path:
        return self.run_dir / "log.txt"

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def progress(self) -> dict[str, Any]:
        return read_progress(self.run_dir)

    def history(self) -> list[dict[str, Any]]:
        return read_history(self.run_dir)

    def log_tail(self, n: int = 20) -> str:
        return tail(self.log_path, n)

    def rank_pids(self) -> list[int]:
        """The live ranks of a job trained by several processes (``nproc`` > 1): each rank writes
        ``<run>/rank<N>.pid`` when it starts; a pid that is gone or no longer this job's is left out."""
        pids = []
        for f in sorted(self.run_dir.glob("rank*.pid")):
            try:
                pid = int(f.read_text().strip())
            except (OSError, ValueError):
                continue
            if _pid_alive(pid, self.id):
                pids.append(pid)
        return pids


def cfg_to_argv(cfg: Mapping[str, Any], out: str | Path) -> list[str]:
    """A Train-form dict -> ``spine-models train`` arguments (flags where they exist, else ``--set``)."""
    import yaml

    if not cfg.get("task"):
        raise ConfigError("job config needs 'task' (classify, detect or segment)")
    data = cfg.get("data")
    if not data:
        raise ConfigError("job config needs 'data': a dataset folder, ZIP or file (or a list of them)")
    argv = ["--task", str(cfg["task"])]
    for d in [data] if isinstance(data, (str, Path)) else list(data):
        argv += ["--data", str(d)]
    argv += ["--out", str(out)]
    for k in _FLAGS:
        if cfg.get(k) is not None and cfg.get(k) != "":
            argv += [f"--{k}", str(cfg[k])]
    for k, v in cfg.items():
        if k in ("task", "data", "out", *_FLAGS) or v is None:
            continue
        text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
        if text.endswith("\n...") or text.endswith(" ..."):
            text = text.rsplit("...", 1)[0].strip()
        argv += ["--set", f"{k}={text}"]
    argv.append("--quiet")
    return argv


def argv_to_config(argv: Sequence[str]) -> dict[str, Any]:
    """The config a job's arguments (as :func:`cfg_to_argv` writes them) train with: the values the CLI
    would parse, typed by the same flag table, merged by ``spine_models.config.train_config``."""
    from spine_models.config import train_config

    values: dict[str, Any] = {"flags": {}, "data": [], "sets": [], "out": None, "quiet": False, "resume": False}
    task = None
    it = iter(argv)
    for arg in it:
        if arg in ("--quiet", "--resume"):
            values[arg[2:]] = True
            continue
        name = arg[2:] if arg.startswith("--") else ""
        value = next(it, None)
        if value is None or name not in ("task", "data", "out", "set", *TRAIN_FLAGS):
            raise ConfigError(f"job arguments: {arg!r} is not a train flag with a value; resubmit the job from the Train page")
        if name == "task":
            task = value
        elif name == "data":
            values["data"].append(value)
        elif name == "set":
            values["sets"].append(value)
        elif name == "out":
            values["out"] = value
        else:
            try:
                values["flags"][name] = TRAIN_FLAGS[name](value)
            except ValueError:
                raise ConfigError(f"job config: {name}={value!r} should be {TRAIN_FLAGS[name].__name__}") from None
            if name == "mode" and value not in TRAIN_MODES:
                raise ConfigError(f"job config: mode={value!r}; valid: {', '.join(TRAIN_MODES)}")
    if not task:
        raise ConfigError("job config needs 'task' (classify, detect or segment)")
    return train_config(task, **values)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or being rewritten right now
        return default


def read_progress(run_dir: str | Path) -> dict[str, Any]:
    """The runner's ``progress.json`` ({} before the first batch)."""
    return _read_json(Path(run_dir) / "progress.json", {})


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-epoch metrics: the trainer's ``history.json`` (a list of epochs; an older detection run's
    ``{"epochs": [...], "summary": ...}`` too), else what the progress callback collected."""
    from spine_models.engine.trainer import read_history_file

    h = read_history_file(Path(run_dir) / "history.json")
    if h:
        return h
    return list(read_progress(run_dir).get("history") or [])


def tail(path: str | Path, n: int = 20) -> str:
    """The last ``n`` lines of a text file ("" when absent)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64_000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _pid_alive(pid: int | None, job_id: str, store_db: str | None = None) -> bool:
    """Is ``pid`` still our runner for ``job_id``? (guards against PID reuse after a restart).

    ``store_db`` (the store's database path): a process that still shows a runner command line of the same store is
    taken as this job's too. Why: a job's runner starts the next queued job when it ends (:func:`run_job`), and
    between that fork and the exec the new process carries its parent's command line, not the new job's id; under
    load that window lasted long enough for another process's ``tick`` to mark a just-started job failed."""
    if not pid or not _pid_running(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():  # no /proc: the pid is all we can check
        return True
    try:
        text = cmdline.read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return job_id in text or (store_db is not None and _RUNNER in text and store_db in text)


def _pid_running(pid: int) -> bool:
    """The process exists and is not a zombie (no ownership check: used to finish a kill)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


def _signal_group(pid: int, sig: int) -> None:
    """Signal the job's process group; fall back to the process itself before it has its own group."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except ProcessLookupError:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# Popen objects of jobs started by this process (so finished children are reaped, not zombies)
_CHILDREN: dict[str, subprocess.Popen] = {}


class JobStore:
    """SQLite-backed queue of training jobs under ``runs_dir`` (``runs_dir/jobs.sqlite``)."""

    def __init__(self, runs_dir: str | Path | None = None, *, max_concurrent: int = 1, db_path: str | Path | None = None,
                 python: str | None = None) -> None:
        if max_concurrent < 1:
            raise ConfigError(f"max_concurrent={max_concurrent}: at least 1 job must be allowed to run")
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = Path(db_path) if db_path else self.runs_dir / "jobs.sqlite"
        self.max_concurrent = int(max_concurrent)
        self.python = python or sys.executable
        with self._connect() as db:
            db.execute(_SCHEMA)

    # ------------------------------------------------------------------ storage
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(id=row["id"], seq=row["seq"], task=row["task"], status=row["status"], cfg=json.loads(row["cfg"]),
                   argv=json.loads(row["argv"]), run_dir=Path(row["run_dir"]), pid=row["pid"], created=row["created"],
                   started=row["started"], finished=row["finished"], error=row["error"], card=row["card"])

    def _update(self, job_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    def get(self, job_id: str) -> Job:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise SpineInputError(f"no job {job_id!r} in {self.db_path}; pick one from the job list")
        return self._job(row)

    def list(self, status: str | Sequence[str] | None = None) -> list[Job]:
        """Jobs, newest first (optionally only some statuses)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY seq DESC").fetchall()
        wanted = None if status is None else ({status} if isinstance(status, str) else set(status))
        return [self._job(r) for r in rows if wanted is None or r["status"] in wanted]

    # ------------------------------------------------------------------ lifecycle
    def submit(self, cfg: Mapping[str, Any], *, start: bool = True) -> str:
        """Queue a training job; returns its id. The config is validated now (bad keys fail here, not later)."""
        job_id = f"{cfg.get('task', 'job')}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        run_dir = (self.runs_dir / job_id).resolve()
        argv = cfg_to_argv(cfg, run_dir)
        argv_to_config(argv)  # raises ConfigError on unknown keys / wrong types, as the CLI would
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "job.json").write_text(json.dumps({"id": job_id, "cfg": dict(cfg), "argv": argv}, indent=2, default=str))
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            seq = int(db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0])
            db.execute("INSERT INTO jobs (id, seq, task, status, cfg, argv, run_dir, created) VALUES (?,?,?,?,?,?,?,?)",
                       (job_id, seq, str(cfg["task"]), "queued", json.dumps(dict(cfg), default=str), json.dumps(argv),
                        str(run_dir), time.time()))
            db.execute("COMMIT")
        if start:
            self.tick()
        return job_id

    def _spawn(self, job: Job) -> int:
        log = open(job.log_path, "ab")
        try:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            proc = subprocess.Popen([self.python, "-m", _RUNNER, "run", str(self.db_path), job.id],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=os.getcwd())
        finally:
            log.close()
        _CHILDREN[job.id] = proc
        return proc.pid

    def _alive(self, job: Job) -> bool:
        if not job.pid:  # marked running by a tick (of this or another process) that has not spawned it yet
            return time.time() - float(job.started or 0) < SPAWN_GRACE_S
        proc = _CHILDREN.get(job.id)
        if proc is not None and proc.pid == job.pid:
            return proc.poll() is None
        return _pid_alive(job.pid, job.id, str(self.db_path))

    def _settle(self, job: Job) -> None:
        """A running job whose process ended: done/failed from result.json, else failed with its log tail. Ranks
        its launcher left behind (it was killed) cannot report any more: they are stopped."""
        for pid in job.rank_pids():
            _signal_group(pid, signal.SIGKILL)
        result = _read_json(job.run_dir / "result.json", None)
        if isinstance(result, dict) and result.get("status") in ("done", "failed"):
            self._update(job.id, status=result["status"], finished=result.get("finished") or time.time(),
                         error=result.get("error"), card=result.get("card"))
        else:
            last = job.log_tail(8) or "(empty log)"
            self._update(job.id, status="failed", finished=time.time(),
                         error=f"the training process (pid {job.pid}) ended without a result; last log lines:\n{last}")
        _CHILDREN.pop(job.id, None)

    def tick(self) -> list[Job]:
        """Reconcile rows with processes and start queued jobs while fewer than ``max_concurrent`` run."""
        for job in self.list("running"):
            if not self._alive(job):
                self._settle(job)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            running = int(db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'running'").fetchone()[0])
            room = max(0, self.max_concurrent - running)
            rows = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT ?", (room,)).fetchall()
            starting = [self._job(r) for r in rows]
            for job in starting:
                db.execute("UPDATE jobs SET status = 'running', started = ? WHERE id = ?", (time.time(), job.id))
            db.execute("COMMIT")
        for job in starting:
            try:
                pid = self._spawn(job)
            except OSError as exc:
                self._update(job.id, status="failed", finished=time.time(), error=f"could not start: {exc}")
                continue
            self._update(job.id, pid=pid)
        return self.list()

    def cancel(self, job_id: str, *, grace_s: float = 3.0) -> Job:
        """Stop a job: a queued one never starts; a running one's process group is killed.

        The kill does not depend on the PID-reuse guard of ``_alive``: a job that another job's runner
        has just started may not show its id in its command line yet, and must still be stopped.
        """
        job = self.get(job_id)
        if not job.active:
            return job
        if job.status == "running" and job.pid and _pid_running(job.pid):
            # the job's process group (runner, torchrun) and, for a multi-process job, every rank: torchrun starts
            # each rank in a session of its own, so the group signal alone does not reach them
            ranks = job.rank_pids()
            for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
                for pid in (job.pid, *ranks):
                    _signal_group(pid, sig)
                proc = _CHILDREN.get(job.id)
                deadline = time.time() + wait_s
                while time.time() < deadline and any(_pid_running(p) for p in (job.pid, *ranks)):
                    if proc is not None:
                        proc.poll()  # reap our own child so it does not linger as a zombie
                    time.sleep(0.05)
                if not any(_pid_running(p) for p in (job.pid, *ranks)):
                    break
        _CHILDREN.pop(job.id, None)
        self._update(job_id, status="cancelled", finished=time.time(), error="cancelled by the user")
        self.tick()
        return self.get(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again to continue from its run folder's ``last.pt`` (``--resume``): after a
        crash, a kill or a restart, training goes on from the last completed epoch instead of starting over."""
        job = self.get(job_id)
        if job.status not in ("failed", "cancelled"):
            raise SpineInputError(f"job {job_id} is {job.status}; only a failed or cancelled job can be resumed")
        last = job.run_dir / "last.pt"
        if not last.is_file():
            raise SpineInputError(f"job {job_id}: {last} is missing (it stopped before its first epoch ended); "
                                  "submit it again instead")
        argv = job.argv if "--resume" in job.argv else [*job.argv, "--resume"]
        (job.run_dir / "result.json").unlink(missing_ok=True)
        with open(job.log_path, "a", encoding="utf-8") as log:
            log.write(f"--- resumed from {last.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
        self._update(job_id, status="queued", argv=json.dumps(argv), pid=None, started=None, finished=None, error=None,
                     card=None)
        self.tick()
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float = 600.0, poll_s: float = 0.5) -> Job:
        """Block until the job is no longer queued/running (tests, scripts)."""
        deadline = time.time() + timeout
        while True:
            self.tick()
            job = self.get(job_id)
            if not job.active:
                return job
            if time.time() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f} s")
            time.sleep(poll_s)

    def delete(self, job_id: str) -> None:
        """Forget a finished job (its run folder stays on disk)."""
        job = self.get(job_id)
        if job.active:
            raise SpineInputError(f"job {job_id} is {job.status}; cancel it before removing it")
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    # ------------------------------------------------------------------ outputs
    def card_path(self, job_id: str) -> Path | None:
        job = self.get(job_id)
        p = Path(job.card) if job.card else job.run_dir / "card.json"
        return p if job.status == "done" and p.is_file() else None

    def finished_runs(self) -> list[tuple[Job, Path]]:
        """(job, card.json) of every completed job, newest first (for Compare models)."""
        out = []
        for job in self.list("done"):
            p = self.card_path(job.id)
            if p is not None:
                out.append((job, p))
        return out

    def promote(self, job_id: str, model_id: str | None = None, weights_dir: str | Path | None = None) -> Path:
        """Copy a finished run's ``model.pt`` + card into the weights folder as ``<id>.pt`` / ``<id>.json``.

        The card's ``weights`` becomes ``weights/<id>.pt`` and ``sha256`` is recomputed from the copy.
        """
        import re
        import shutil

        from spine_models.models.cards import ModelCard, sha256_file
        from spine_models.models.cards import weights_dir as default_weights_dir

        card_file = self.card_path(job_id)
        if card_file is None:
            raise SpineInputError(f"job {job_id} has no finished model to promote (status {self.get(job_id).status})")
        card = ModelCard.from_json(card_file)
        src = card.weights_path() if card.weights_path().is_file() else card_file.parent / "model.pt"
        if not src.is_file():
            raise SpineInputError(f"{src}: the run's weight file is missing; retrain the job", src)
        new_id = model_id or card.id
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", new_id):
            raise SpineInputError(f"model id {new_id!r}: use letters, digits, '.', '_' or '-' (no spaces or slashes)")
        dest_dir = Path(weights_dir) if weights_dir else default_weights_dir()
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest_pt, dest_json = dest_dir / f"{new_id}.pt", dest_dir / f"{new_id}.json"
        if dest_json.exists() or dest_pt.exists():
            raise SpineInputError(f"{dest_json}: a shipped model with id {new_id!r} exists; choose another id")
        shutil.copyfile(src, dest_pt)
        card.id = new_id
        card.weights = f"weights/{dest_pt.name}"
        card.sha256 = sha256_file(dest_pt)
        card.to_json(dest_json)
        return dest_json


# ---------------------------------------------------------------------- the child process
class ProgressFile(Callback):
    """Training callback: writes ``progress.json`` (atomic) and echoes epochs/logs to the job log."""

    def __init__(self, run_dir: str | Path, every_s: float = 0.5) -> None:
        self.path = Path(run_dir) / "progress.json"
        self.every_s = every_s
        self.state: dict[str, Any] = {"epoch": 0, "epochs": None, "step": 0, "steps": None, "loss": None, "history": [],
                                      "updated": time.time()}
        self._last = 0.0

    def _write(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        self.state["updated"] = now
        atomic_write_text(self.path, json.dumps(self.state, default=float))

    def on_train_start(self, cfg: dict[str, Any]) -> None:
        self.state["epochs"] = cfg.get("epochs")
        self._write(force=True)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.state.update(epoch=epoch, epochs=epochs, step=0)
        self._write(force=True)

    def on_batch_end(self, step: int, steps: int, loss: float) -> None:
        self.state.update(step=step, steps=steps, loss=float(loss))
        self._write()

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        row = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
        row.setdefault("epoch", epoch)
        self.state["history"].append(row)
        self._write(force=True)
        print(json.dumps(row, default=str), flush=True)

    def on_log(self, message: str) -> None:
        print(message, flush=True)

    def on_train_end(self, summary: dict[str, Any]) -> None:
        self.state["finished"] = True
        self._write(force=True)


def _run_group(store: "JobStore", job: Job, nproc: int) -> dict[str, Any]:
    """A job of ``nproc`` processes: this module again under torchrun (each rank trains, rank 0 writes the card and
    result.json), waited for here. A rank that dies or raises makes torchrun stop the others and exit non-zero."""
    from spine_models.engine import trains_distributed
    from spine_models.engine.distributed import torchrun_argv

    cfg = argv_to_config(job.argv)
    if not trains_distributed(cfg["task"], cfg.get("model")):
        raise ConfigError(f"nproc={nproc}: {cfg['task']} model {cfg.get('model')!r} trains in one process; set nproc 1")
    rc = subprocess.call(torchrun_argv(nproc, [_RUNNER, "run", str(store.db_path), job.id]),
                         stdin=subprocess.DEVNULL)
    result = _read_json(job.run_dir / "result.json", None)
    if rc == 0 and isinstance(result, dict) and result.get("status") == "done":
        return result
    said = result.get("error") if isinstance(result, dict) and result.get("status") == "failed" else None
    if said and not said.startswith("internal error"):  # rank 0's one line about the user's input
        return result
    return {"status": "failed", "error": f"the training group of {nproc} processes failed (torchrun exit status {rc}: a "
                                         f"rank died or raised){'; rank 0: ' + said if said else ''}; last log lines:\n"
                                         f"{job.log_tail(8)}"}


def _run_job(db_path: str, job_id: str) -> int:
    """Body of the job process: the stored argv's config (as the CLI would build it), train, write result.json.
    With ``nproc`` > 1 it launches the ranks (:func:`_run_group`); a rank runs this too and trains; only rank 0 writes
    result.json, and only the launcher updates the store."""
    import traceback

    from spine_models._env import configure_offline
    from spine_models.engine.distributed import dist_info

    configure_offline()
    rank = dist_info()
    store = JobStore(Path(db_path).parent, db_path=db_path)
    job = store.get(job_id)
    result: dict[str, Any]
    if rank.distributed:
        (job.run_dir / f"rank{rank.rank}.pid").write_text(str(os.getpid()))
    else:
        print(f"$ {job.command}", flush=True)
    try:
        from spine_models.engine import task_module

        cfg = argv_to_config(job.argv)
        nproc = int(cfg.get("nproc") or 1)
        if nproc > 1 and not rank.distributed:
            result = _run_group(store, job, nproc)
        else:
            card = task_module(cfg["task"], arch=cfg.get("model")).train(cfg, job.run_dir, callbacks=[ProgressFile(job.run_dir)],
                                                                        quiet=True)
            result = {"status": "done", "card": str(card)}
    except SpineInputError as exc:
        print(f"error: {exc}", flush=True)
        result = {"status": "failed", "error": str(exc)}
    except Exception as exc:  # an internal error: keep the traceback in the log, say it in one line
        traceback.print_exc()
        result = {"status": "failed", "error": f"internal error: {type(exc).__name__}: {exc}"}
    result["finished"] = time.time()
    if rank.distributed:  # a rank: rank 0 reports to the launcher through result.json; the launcher updates the store
        if rank.main:
            (job.run_dir / "result.json").write_text(json.dumps(result, indent=2))
        return 0 if result["status"] == "done" else 1
    (job.run_dir / "result.json").write_text(json.dumps(result, indent=2))
    store._update(job_id, status=result["status"], finished=result["finished"], error=result.get("error"),
                  card=result.get("card"), pid=os.getpid())
    store.tick()  # start the next queued job even when no page is open
    return 0 if result["status"] == "done" else 1


if __name__ == "__main__":  # python -m spine_models.engine.jobs run DB JOB
    if len(sys.argv) != 4 or sys.argv[1] != "run":
        sys.stderr.write("usage: python -m spine_models.engine.jobs run JOBS.sqlite JOB_ID\n")
        raise SystemExit(2)
    raise SystemExit(_run_job(sys.argv[2], sys.argv[3]))
