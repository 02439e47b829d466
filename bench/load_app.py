"""Load test of the app on a real server: N concurrent browser sessions uploading films for a bounded time.
Prints figures; not a test.

    .venv/bin/python bench/load_app.py                              # 20 sessions, 5 minutes, shipped weights
    .venv/bin/python bench/load_app.py --duration 90 --weights tiny # quick check with tiny random-weight models
    .venv/bin/python bench/load_app.py --sessions 5 --max-uploads 3

Why: issue 17 item 7 -- 20 sessions uploading films for 5 minutes with no failed request, the server's memory
bounded (<= 2 GB) and reported, and every model loaded once per server. What it does: starts `streamlit run app.py`
on a free port on 127.0.0.1 only (private runs/cache folders under a temp dir), then one headless chromium
(Debian's /usr/bin/chromium through Playwright) with ``--sessions`` pages. Each page, until ``--duration`` seconds
have passed (and at most ``--max-uploads`` times), opens the Analyse X-ray page (a new Streamlit session), uploads
the next film and waits for "model(s) ran in" (``--timeout`` s). An upload that times out, shows a Python exception
or a connection error counts as failed. Every 0.5 s it samples the server's memory (RSS and PSS of the server
process and its children). The server logs each model it builds (``engine.predictor.shared_predictor``); the report
counts those lines per model: 1 each means loaded once, whatever the number of sessions. The server gets
``MALLOC_ARENA_MAX=2`` as `make run` and the Dockerfile set it (pass ``MALLOC_ARENA_MAX=16`` to see glibc's default, 8 per core,
on 2 cores: 20 sessions held ~2.6 GB PSS instead of ~1.8 GB).
Exit status: 0 when no upload failed and the memory stayed under ``--max-memory-mb``, else 1.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

__all__ = ["main"]

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# the server with INFO logs of spine_models.engine.predictor (one line per model built), then streamlit's own CLI
SERVER = """
import logging, sys
h = logging.StreamHandler(sys.stderr)
h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
log = logging.getLogger("spine_models.engine.predictor")
log.setLevel(logging.INFO)
log.addHandler(h)
from streamlit.web.cli import main
sys.argv = ["streamlit", "run", *sys.argv[1:]]
sys.exit(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _films(n: int, tmp: Path) -> list[Path]:
    real = ROOT.parent / "shared" / "data" / "fraiwan-ap"
    if real.is_dir():
        files = sorted(p for p in real.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return files[:: max(1, len(files) // n)][:n]
    from tests.app_fixtures import film, png_bytes

    out = []
    for i in range(n):
        p = tmp / f"film_{i}.png"
        p.write_bytes(png_bytes(film(512, 256, seed=i)))
        out.append(p)
    return out


class MemorySampler(threading.Thread):
    """Peak RSS and PSS (MB) of a process and its children, sampled every ``every_s``."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.every_s = every_s
        self.peak_rss = self.peak_pss = self.last_rss = 0.0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            rss = pss = 0
            try:
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    try:
                        m = p.memory_full_info()
                        rss, pss = rss + m.rss, pss + getattr(m, "pss", m.rss)
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
            except psutil.NoSuchProcess:
                return
            self.last_rss = rss / 2**20
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss / 2**20), max(self.peak_pss, pss / 2**20)
            self.samples += 1
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()


async def _session(k: int, browser, url: str, films: list[Path], deadline: float, args, stats: dict) -> None:
    """One browser session: open the page, upload a film, wait for the results; again until the deadline."""
    page = await browser.new_page(viewport={"width": 1200, "height": 1600})
    i = k
    n = 0
    try:
        while time.time() < deadline and n < args.max_uploads:
            film = films[i % len(films)]
            i += args.sessions
            n += 1
            t0 = time.perf_counter()
            try:
                await page.goto(url, timeout=args.timeout * 1000)
                await page.locator("input[type=file]").first.wait_for(state="attached", timeout=args.timeout * 1000)
                await page.locator("input[type=file]").first.set_input_files(str(film))
                await page.get_by_text(re.compile(r"model\(s\) ran in")).first.wait_for(timeout=args.timeout * 1000)
                bad = await page.locator('[data-testid="stException"]').count()
                text = await page.inner_text("body")
                if bad or "Traceback" in text or "Connection error" in text:
                    raise RuntimeError("the page shows an exception or a connection error")
                stats["ok"].append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - a failed request of the load test: counted and reported
                stats["failed"].append(f"session {k} upload {n} ({film.name}): {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        await page.close()


async def _drive(url: str, films: list[Path], args) -> dict:
    from playwright.async_api import async_playwright

    stats: dict = {"ok": [], "failed": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            deadline = time.time() + args.duration
            await asyncio.gather(*(_session(k, browser, url, films, deadline, args, stats) for k in range(args.sessions)))
        finally:
            await browser.close()
    return stats


def _weights(kind: str, tmp: Path) -> Path:
    if kind == "shipped":
        return ROOT / "weights"
    if kind == "tiny":
        from tests.app_fixtures import make_weights

        return make_weights(tmp / "weights", detect=False)
    return Path(kind)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of uploads (default 300)")
    ap.add_argument("--max-uploads", type=int, default=1000, help="uploads per session at most")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one upload may take")
    ap.add_argument("--weights", default="shipped", help="'shipped' (weights/), 'tiny' (random test models) or a folder")
    ap.add_argument("--max-memory-mb", type=float, default=2048.0)
    ap.add_argument("--log", default=None, help="keep the server's log in this file")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print("/usr/bin/chromium is absent: install Debian's chromium to run the load test", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        weights = _weights(args.weights, tmp)
        films = _films(max(args.sessions, 20), tmp)
        port = _free_port()
        env = dict(os.environ, SPINE_MODELS_WEIGHTS=str(weights), SPINE_MODELS_RUNS=str(tmp / "runs"),
                   SPINE_MODELS_CACHE=str(tmp / "cache"), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false",
                   PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1")
        env.setdefault("MALLOC_ARENA_MAX", "2")  # as `make run` and the Dockerfile start the server
        log_path = tmp / "server.log"
        url = f"http://127.0.0.1:{port}"
        print(f"{args.sessions} sessions for {args.duration:.0f} s against {url} (weights: {weights}); {len(films)} films; "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
        with open(log_path, "wb") as log:
            server = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT / "app.py"), "--server.headless", "true",
                                       "--server.port", str(port), "--server.address", "127.0.0.1",
                                       "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        sampler = MemorySampler(server.pid)
        sampler.start()
        try:
            t0 = time.time()
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read().strip() == b"ok":
                        break
                except OSError:
                    if time.time() - t0 > 120 or server.poll() is not None:
                        print(f"the server did not start; log:\n{log_path.read_text()[-3000:]}", file=sys.stderr)
                        return 1
                    time.sleep(0.3)
            print(f"server healthy after {time.time() - t0:.1f} s", flush=True)
            t1 = time.time()
            stats = asyncio.run(_drive(url + "/", films, args))
            took = time.time() - t1
        finally:
            sampler.stop()
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
        server_log = log_path.read_text(errors="replace")
        if args.log:
            Path(args.log).write_text(server_log)
        loads = collections.Counter(m.group(1) for m in re.finditer(r"loaded model (\S+ \(\w+\))", server_log))
        tracebacks = server_log.count("Traceback")
        if tracebacks:
            print("last traceback in the server log:\n" + server_log[server_log.rfind("Traceback"):][:3000])
    ok, failed = stats["ok"], stats["failed"]
    print(f"uploads: {len(ok)} completed, {len(failed)} failed in {took:.0f} s ({len(ok) / max(took, 1e-9):.2f} analyses/s)")
    if ok:
        q = statistics.quantiles(ok, n=20, method="inclusive") if len(ok) >= 2 else [ok[0]] * 19
        print(f"upload -> results: median {statistics.median(ok):.1f} s, p95 {q[18]:.1f} s, max {max(ok):.1f} s")
    for f in failed[:10]:
        print(f"  failed: {f}")
    print(f"server memory: peak PSS {sampler.peak_pss:.0f} MB, peak RSS {sampler.peak_rss:.0f} MB, at the end RSS "
          f"{sampler.last_rss:.0f} MB ({sampler.samples} samples)")
    once = all(v == 1 for v in loads.values())
    print(f"models built by the server: {dict(loads)} -> {'each once' if once else 'SOME MORE THAN ONCE'}")
    print(f"tracebacks in the server log: {tracebacks}; load average after: {os.getloadavg()[0]:.1f}")
    good = not failed and sampler.peak_pss <= args.max_memory_mb and once and tracebacks == 0 and ok
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
