"""Click latency of the annotator, against a bare ``SamPredictor.predict`` on the same frame.

1. Server side: one positive click through ``edit_handlers.on_click`` (SAM decoder on the cached
   embedding -> new ``human`` version in the store -> the re-rendered view), p50/p95 over N clicks,
   beside ``SamPredictor.predict`` (one point, multimask, the same model and frame) in one process.
   SAM ``--segmenter`` (default ``sam_vit_b``) on ``--device`` (default ``cpu``; ``cuda`` with
   ``sam_vit_h`` for the GPU figure): the weights of ``--checkpoint``, else random weights
   (latency does not depend on the weights' values).
2. Browser: click on the frame -> the new overlay image loaded, in Chromium driven by playwright,
   against ``python -m hmtools annotate`` (``--browser fake``: no model; ``--browser vit_b``: the
   same random-weight vit_b saved to a temporary checkpoint).

    PYTHONPATH=. python benchmarks/annotator_latency.py [--clicks 50] [--browser fake|vit_b|none]
    PYTHONPATH=. python benchmarks/annotator_latency.py --segmenter sam_vit_h --device cuda --browser none
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotator_app import edit_handlers as eh  # noqa: E402
from annotator_app import handlers as h  # noqa: E402
from annotator_app.backend import SamBackend  # noqa: E402
from annotator_app.frames import FrameSource  # noqa: E402
from annotator_app.state import AppContext, SessionState  # noqa: E402
from hmtools.schema import Sample  # noqa: E402
from hmtools.store import MaskStore  # noqa: E402
from hmtools.store_types import MaskWrite  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip


def default_frame() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "zidane.jpg"  # 1280x720, real people


def make_store(tmp: Path, frame: np.ndarray, n_frames: int) -> tuple[Path, Path]:
    """One sample of ``n_frames`` copies of ``frame`` with an auto mask each (a centred box)."""
    root, db = tmp / "root", tmp / "masks.db"
    (root / "clip").mkdir(parents=True, exist_ok=True)
    keys = []
    for i in range(n_frames):
        Image.fromarray(frame).save(root / "clip" / f"{i:05d}.jpg", quality=92)
        keys.append(f"clip/{i:05d}.jpg")
    h_, w_ = frame.shape[:2]
    mask = np.zeros((h_, w_), bool)
    mask[h_ // 4 : 3 * h_ // 4, w_ // 3 : 2 * w_ // 3] = True
    with MaskStore(db) as store:
        store.add_samples([Sample("bench/clip", "aqa7", tuple(keys), "train")])
        store.set_frame_sizes({k: (h_, w_) for k in keys})
        store.write_sample_masks("bench/clip", [MaskWrite(mask=mask, score=0.9)] * n_frames, author="bench")
    return db, root


def pct(xs: list[float]) -> str:
    a = np.asarray(xs) * 1000
    return f"p50 {np.percentile(a, 50):7.1f} ms  p95 {np.percentile(a, 95):7.1f} ms"


def server_side(
    frame: np.ndarray,
    clicks: int,
    checkpoint: Path | None,
    tmp: Path,
    model: str = "sam_vit_b",
    device: str = "cpu",
    dtype: str = "auto",
) -> object:
    import copy

    import torch
    from segment_anything import SamPredictor

    from pipelines.segment import SamSegmenter, build_segmenter

    torch.manual_seed(0)
    # one set of fp32 weights; the app's segmenter converts its own copy (bf16 encoder on CUDA),
    # the bare SamPredictor keeps fp32 (it feeds the encoder fp32 images)
    base = build_segmenter(model, checkpoint, "cpu", random_weights=checkpoint is None, sdpa=False, dtype="fp32").model
    seg = SamSegmenter(copy.deepcopy(base), device, dtype=dtype)
    rng = np.random.default_rng(0)
    hh, ww = frame.shape[:2]
    points = np.stack([rng.uniform(0.2, 0.8, clicks) * ww, rng.uniform(0.2, 0.8, clicks) * hh], 1).round()

    predictor = SamPredictor(base.to(device))
    t = time.perf_counter()
    predictor.set_image(frame)
    encode_s = time.perf_counter() - t

    db, root = make_store(tmp, frame, 3)
    store = MaskStore(db, create=False)
    backend = SamBackend(seg, cache_mb=256)
    ctx = AppContext(store=store, frames=FrameSource(root), backend=backend, prefetch_ahead=0, prefetch_behind=0)
    state = h.set_user(ctx, SessionState(), "bench")
    state, _ = h.on_open(ctx, state, "bench/clip", 1)
    backend.embed(state.keys[1], lambda: ctx.frames.load(state.keys[1]))  # cached before the clicks
    ours, decode_only, bare, bare1 = [], [], [], []
    load = lambda: ctx.frames.load(state.keys[1])  # noqa: E731
    from annotator_app.backend import Prompt

    # one untimed call of each path first: the process's first decoder call (lazy CUDA module loading,
    # oneDNN primitives, first-use imports) would otherwise land on whichever side runs first
    p0 = points[0]
    predictor.predict(point_coords=p0[None], point_labels=np.array([1]), multimask_output=True)
    predictor.predict(point_coords=p0[None], point_labels=np.array([1]), multimask_output=False)
    state.clicks = None
    state, _ = eh.on_click(ctx, state, float(p0[0]), float(p0[1]))
    backend.predict(state.keys[1], load, Prompt(points=p0[None].astype(np.float32), labels=np.array([1])))
    for p in points:  # interleaved, so load from other processes on the machine hits both alike
        t = time.perf_counter()
        predictor.predict(point_coords=p[None], point_labels=np.array([1]), multimask_output=True)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        predictor.predict(point_coords=p[None], point_labels=np.array([1]), multimask_output=False)
        bare1.append(time.perf_counter() - t)
        state.clicks = None  # one fresh positive point per click, like the baseline
        t = time.perf_counter()
        state, view = eh.on_click(ctx, state, float(p[0]), float(p[1]))
        ours.append(time.perf_counter() - t)
        assert view.message.startswith("Saved version"), view.message
        t = time.perf_counter()
        backend.predict(state.keys[1], load, Prompt(points=p[None].astype(np.float32), labels=np.array([1])))
        decode_only.append(time.perf_counter() - t)
    assert backend.embed_calls == 1, "the clicks must reuse the cached embedding"
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"frame {ww}x{hh}; {model} on {device} ({card}), app encoder {seg.encoder_dtype}; "
          f"{'checkpoint ' + str(checkpoint) if checkpoint else 'random weights'}; "
          f"encoder (not in the click) {encode_s:.1f} s")  # fmt: skip
    print(f"bare SamPredictor.predict (3 masks) {pct(bare)}")
    print(f"bare SamPredictor.predict (1 mask)  {pct(bare1)}")
    print(f"backend.predict (adapter, cached)   {pct(decode_only)}")
    print(f"on_click: decode+save+render        {pct(ours)}")
    for name, base in (("3-mask", bare), ("1-mask", bare1)):
        ratio = np.percentile(ours, 95) / np.percentile(base, 95)
        print(f"handler p95 / bare {name} predict p95 = {ratio:.2f}  (target <= 1.5)")
    store.close()
    backend.close()
    return seg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser(frame: np.ndarray, clicks: int, kind: str, seg: object, tmp: Path) -> None:
    from playwright.sync_api import sync_playwright

    db, root = make_store(tmp / "browser", frame, 1)
    extra = ["--segmenter", "fake"]
    if kind == "vit_b":
        import torch

        ckpt = tmp / "vit_b_random.pth"
        torch.save(seg.model.state_dict(), ckpt)
        extra = ["--segmenter", "sam_vit_b", "--sam-checkpoint", str(ckpt), "--device", "cpu"]
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), GRADIO_ANALYTICS_ENABLED="False")
    cmd = [sys.executable, "-m", "hmtools", "annotate", "--store", str(db), "--root", str(root), "--port", str(port)]
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([*cmd, *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(url)
            page.locator("#hm-sample-id input, #hm-sample-id textarea").first.fill("bench/clip")
            page.click("#hm-open")
            page.wait_for_function("document.querySelector('#hm-info').innerText.includes('bench/clip')")
            rng = np.random.default_rng(1)
            img = page.locator("#hm-frame img")
            page.wait_for_function(
                "(() => { const i = document.querySelector('#hm-frame img'); return i && i.complete && i.naturalWidth > 0; })()"
            )
            box = img.bounding_box()
            nw, nh = page.evaluate(
                "() => { const i = document.querySelector('#hm-frame img'); return [i.naturalWidth, i.naturalHeight]; }"
            )
            r = min(box["width"] / nw, box["height"] / nh, 1)
            ox, oy = (box["width"] - nw * r) / 2, (box["height"] - nh * r) / 2
            times = []
            for i in range(clicks + 1):  # clicks accumulate on the frame (each adds a point)
                fx, fy = rng.uniform(0.25, 0.75) * nw, rng.uniform(0.25, 0.75) * nh
                src = img.get_attribute("src")
                t = time.perf_counter()
                page.mouse.click(box["x"] + ox + fx * r, box["y"] + oy + fy * r)
                page.wait_for_function(
                    f"(() => {{ const m = document.querySelector('#hm-message').innerText;"
                    f" const i = document.querySelector('#hm-frame img');"
                    f" return m.includes('Saved version {i + 2} ') && i.src !== {src!r} && i.complete && i.naturalWidth > 0; }})()",
                    timeout=600_000,
                    polling=5,
                )
                if i > 0:  # the first click may wait for the embedding
                    times.append(time.perf_counter() - t)
            b.close()
        print(f"browser click -> overlay shown ({kind} backend, {nw}x{nh} view)  {pct(times)}  (target p95 < 500 ms)")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=Path, default=None, help="image file (default: ultralytics' zidane.jpg)")
    ap.add_argument("--clicks", type=int, default=50)
    ap.add_argument("--segmenter", choices=("sam_vit_b", "sam_vit_l", "sam_vit_h"), default="sam_vit_b")
    ap.add_argument("--device", default="cpu", help="torch device of the server-side model (cpu, cuda)")
    ap.add_argument(
        "--dtype", choices=("auto", "bf16", "fp32"), default="auto", help="the app's encoder dtype (auto: bf16 on CUDA)"
    )
    ap.add_argument("--checkpoint", type=Path, default=None, help="SAM checkpoint (default: random weights)")
    ap.add_argument("--browser", choices=("fake", "vit_b", "none"), default="fake")
    ap.add_argument("--no-server-side", action="store_true", help="only the browser measurement (fake backend)")
    args = ap.parse_args()
    if args.browser == "vit_b" and (args.segmenter != "sam_vit_b" or args.device != "cpu"):
        ap.error(
            "--browser vit_b serves the server-side model on the CPU: use it with --segmenter sam_vit_b --device cpu"
        )
    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    frame = np.asarray(Image.open(args.frame or default_frame()).convert("RGB"))
    with tempfile.TemporaryDirectory() as d:
        seg = (
            None
            if args.no_server_side
            else server_side(frame, args.clicks, args.checkpoint, Path(d), args.segmenter, args.device, args.dtype)
        )
        if args.browser != "none":
            browser(frame, min(args.clicks, 30), args.browser, seg, Path(d))


if __name__ == "__main__":
    main()
