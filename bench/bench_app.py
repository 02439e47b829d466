"""App figures against the issue's targets. Prints numbers; not a test.

    .venv/bin/python bench/bench_app.py            # shipped models from weights/ (random stand-ins if none)

- upload to first results, warm (classification + detection + segmentation, no SHAP): target <= 2 s
- cold start of `streamlit run` to a usable first page (health + the sidebar rendered in chromium when
  available, else the first HTTP page): target <= 10 s
- memory (RSS) of a process holding every shipped model loaded, after one pass: target <= 2 GB

Without shipped weights the benchmark writes random-weight stand-ins (resnet18 @224, yolov8n @512,
unet_resnet18 @512x256) to a temp weights folder: latency and memory do not depend on weight values.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stand_in_weights(folder: Path) -> Path:
    """Random-weight cards of realistic size (what a user would ship) for when weights/ is empty."""
    import torch

    from spine_models.models.cards import ModelCard, save_checkpoint_file
    from spine_models.models.registry import create_model

    folder.mkdir(parents=True, exist_ok=True)
    specs = [("bench-cls", "classify", "resnet18", {"num_classes": 3, "in_chans": 1}, 224,
              {"classes": ["normal", "scoliosis", "spondylolisthesis"]}),
             ("bench-det", "detect", "yolov8n", {"nc": 2}, 512, {"classes": ["lumbar_implant", "scoliosis"]}),
             ("bench-seg", "segment", "unet_resnet18", {"num_classes": 3, "in_chans": 1}, [512, 256],
              {"structures": ["vertebra", "spinous_process", "pedicle"], "view": "ap"})]
    for mid, task, arch, kw, size, extra in specs:
        torch.manual_seed(0)
        model = create_model(arch, task=task, **kw)
        sha = save_checkpoint_file(folder / f"{mid}.pt", arch=arch, task=task, state_dict=model.state_dict(), arch_kwargs=kw)
        ModelCard(id=mid, task=task, arch=arch, view=extra.pop("view", "any"), trained_on="random (benchmark)",
                  weights=str((folder / f"{mid}.pt").resolve()), sha256=sha, input_size=size, train_command="(bench)",
                  license="research-only", arch_kwargs=kw, **extra).to_json(folder / f"{mid}.json")
    return folder


def film_png(seed: int, h: int = 1024, w: int = 512) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    a = rng.normal(0.15, 0.03, (h, w))
    for k in range(12):
        y0 = 40 + k * (h - 80) // 12
        a[y0:y0 + (h - 80) // 15, w // 3 + int(10 * np.sin(k + seed)): 2 * w // 3] = 0.8
    buf = io.BytesIO()
    Image.fromarray((np.clip(a, 0, 1) * 65535).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def bench_upload(n: int) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    t0 = time.perf_counter()
    at.file_uploader(key="xray_upload").upload("film0.png", film_png(0), "image/png").run()
    first = time.perf_counter() - t0
    if at.exception or at.error:
        raise SystemExit(f"the page failed: {[e.value for e in at.exception] + [e.value for e in at.error]}")
    ran = [e.label for e in at.expander if " · " in e.label.split(" — ")[0]]  # one collapsed section per model
    warm = []
    for i in range(1, n + 1):
        t0 = time.perf_counter()
        at.file_uploader(key="xray_upload").upload(f"film{i}.png", film_png(i), "image/png").run()
        warm.append(time.perf_counter() - t0)
    warm.sort()
    return {"models": len(ran), "first_s": first, "warm_median_s": warm[len(warm) // 2], "warm_max_s": warm[-1],
            "rss_mb": rss_mb()}


def bench_cold_start(env: dict[str, str], film: Path | None = None, idle_s: float = 10.0) -> dict[str, float]:
    """Server start to first page; with ``film`` (and chromium) also the first analysis after the start: the page
    left open ``idle_s`` seconds (the default models warm up in the background), then the film uploaded, timed
    until the findings and every model's section are drawn."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                             "--server.port", str(port), "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out: dict[str, float] = {}
    try:
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read().strip() == b"ok":
                    break
            except OSError:
                time.sleep(0.1)
            if time.perf_counter() - t0 > 120:
                raise SystemExit("streamlit did not start within 120 s")
        out["health_s"] = time.perf_counter() - t0
        if Path("/usr/bin/chromium").exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run"])
                pg = b.new_page()
                pg.goto(url)
                pg.get_by_text("Device:").wait_for(timeout=120_000)
                out["first_page_s"] = time.perf_counter() - t0
                if film is not None:
                    pg.wait_for_timeout(int(idle_s * 1000))
                    t1 = time.perf_counter()
                    pg.locator("input[type=file]").first.set_input_files(str(film))
                    pg.get_by_text("Each model's output").first.wait_for(timeout=180_000)
                    out["first_analysis_s"] = time.perf_counter() - t1
                b.close()
        else:
            urllib.request.urlopen(url, timeout=30).read()
            out["first_page_s"] = time.perf_counter() - t0
        out["server_rss_mb_idle"] = rss_mb(proc.pid)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5, help="warm uploads to time")
    ap.add_argument("--film", type=Path, help="film for the first analysis after a start (default: a phantom-like PNG)")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds the first page stays open before the upload")
    args = ap.parse_args()
    from spine_models.models.cards import list_cards

    tmp = Path(tempfile.mkdtemp(prefix="bench_app_"))
    if not list_cards():
        os.environ["SPINE_MODELS_WEIGHTS"] = str(stand_in_weights(tmp / "weights"))
        print(f"no shipped models: using random-weight stand-ins in {os.environ['SPINE_MODELS_WEIGHTS']}")
    os.environ.setdefault("SPINE_MODELS_RUNS", str(tmp / "runs"))
    import torch

    print(f"torch threads {torch.get_num_threads()}, device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    film = args.film
    if film is None:
        film = tmp / "film.png"
        film.write_bytes(film_png(0))
    cold = bench_cold_start(dict(os.environ), film, args.idle)
    print(f"cold start: health {cold['health_s']:.2f} s, first usable page {cold['first_page_s']:.2f} s (target <= 10 s); "
          f"idle server RSS {cold['server_rss_mb_idle']:.0f} MB")
    if "first_analysis_s" in cold:
        print(f"first analysis after the start ({args.idle:.0f} s on the page, then upload to findings): "
              f"{cold['first_analysis_s']:.2f} s (target <= 3 s)")
    up = bench_upload(args.n)
    print(f"upload to first results ({up['models']} models): first (cold models) {up['first_s']:.2f} s, "
          f"warm median {up['warm_median_s']:.2f} s, max {up['warm_max_s']:.2f} s (target <= 2 s)")
    print(f"RSS with all shipped models loaded: {up['rss_mb']:.0f} MB (target <= 2048 MB)")


if __name__ == "__main__":
    main()
