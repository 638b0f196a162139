"""The annotator in a real Chromium (playwright), against `python -m hmtools annotate --segmenter fake`
run as a subprocess on a tiny store. After each UI step the store itself is checked.

Screenshots go to a temporary folder, or to $HMTOOLS_SCREENSHOT_DIR (``docs/img`` regenerates the
docs' pictures).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _annotator_fixtures import add_flagged_sample, make_dataset, person_mask
from conftest import REPO

from hmtools.store import MaskStore
from hmtools.store_admin import lock_holder
from hmtools.store_types import MaskWrite

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
USERS = {"alice": "pw-alice", "bob": "pw-bob"}
SIZE = (240, 320)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`hmtools annotate` in a subprocess; ``start`` waits until it answers HTTP."""

    def __init__(self, store: Path, root: Path, log: Path):
        self.port, self.store, self.root, self.log = _free_port(), store, root, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), GRADIO_ANALYTICS_ENABLED="False")
        auth = [a for u, p in USERS.items() for a in ("--auth", f"{u}:{p}")]
        cmd = [sys.executable, "-m", "hmtools", "annotate", "--store", str(self.store), "--root", str(self.root)]
        cmd += ["--port", str(self.port), "--segmenter", "fake", *auth]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                urllib.request.urlopen(self.url, timeout=2).read(100)
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(self.log.read_text()[-2000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # no shutdown step: nothing may depend on one
            self.proc.wait(10)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("annotator-browser")
    ds = make_dataset(tmp, n_samples=2, n_frames=8, size=SIZE, flagged=(3,))
    server = Server(ds.store_path, ds.root, tmp / "server.log")
    server.start()
    shots = Path(os.environ.get("HMTOOLS_SCREENSHOT_DIR") or tmp / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield ds, server, browser, shots
        browser.close()
    server.kill()


def _login(browser, server, user, password=None):
    page = browser.new_context(viewport={"width": 1400, "height": 1500}).new_page()
    page.goto(server.url)
    page.locator("input[type=text]").fill(user)
    page.locator("input[type=password]").fill(password or USERS[user])
    page.get_by_role("button", name="Login").click()
    return page


def _open(page, sample):
    page.wait_for_selector("#hm-open")
    page.locator("#hm-sample-id input, #hm-sample-id textarea").first.fill(sample)
    page.click("#hm-open")
    expect(page.locator("#hm-message")).to_contain_text(sample, timeout=15000)


def _click_frame(page, x, y):
    """Click frame pixel (x, y) of the main view the way gradio maps clicks (scale-down, centred)."""
    img = page.locator("#hm-frame img")
    box = img.bounding_box()
    nw, nh = page.evaluate(
        "() => { const i = document.querySelector('#hm-frame img'); return [i.naturalWidth, i.naturalHeight]; }"
    )
    k = nw // SIZE[1]
    r = min(box["width"] / nw, box["height"] / nh, 1)
    ox, oy = (box["width"] - nw * r) / 2, (box["height"] - nh * r) / 2
    page.mouse.click(box["x"] + ox + (x * k + k / 2) * r, box["y"] + oy + (y * k + k / 2) * r)


def _head(store_path, key):
    with MaskStore(store_path, create=False) as store:
        return store.current_mask(key)


def _brush_stroke(page, start: tuple[float, float], steps: int, step: tuple[int, int]) -> None:
    """Open the brush panel, load the frame into the brush and paint one stroke: from ``start``
    (fractions of the canvas' width and height) ``steps`` moves of ``step`` pixels (x, y)."""
    page.click("#hm-brush-panel .label-wrap")
    page.click("#hm-brush-load")
    canvas = page.locator("#hm-editor canvas").first
    expect(canvas).to_be_visible()
    time.sleep(0.5)
    cb = canvas.bounding_box()
    x0, y0 = cb["x"] + cb["width"] * start[0], cb["y"] + cb["height"] * start[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(steps):
        page.mouse.move(x0 + step[0] * k, y0 + step[1] * k)
    page.mouse.up()


def test_click_brush_undo_accept_propagate(env):
    ds, server, browser, shots = env
    key = ds.samples[0].frames[3]
    page = _login(browser, server, "alice")
    _open(page, ds.samples[0].sample_id)
    page.click("#hm-next-flagged")
    expect(page.locator("#hm-info")).to_contain_text("flag reason: low score")
    expect(page.locator("#hm-info")).to_contain_text("frame 4/8")
    page.screenshot(path=shots / "annotator_flagged.png")

    ys, xs = np.nonzero(ds.truth[key])
    _click_frame(page, int(xs.mean()), int(ys.mean()))  # positive click on the athlete
    expect(page.locator("#hm-message")).to_contain_text("Saved version 2")
    rec = _head(ds.store_path, key)
    assert (rec.version, rec.source, rec.author, rec.status) == (2, "human", "alice", "unreviewed")
    assert rec.mask()[int(ys.mean()), int(xs.mean())]
    clicked = rec.mask()
    page.screenshot(path=shots / "annotator_click.png")

    _brush_stroke(page, (0.62, 0.7), 15, (4, -2))
    page.screenshot(path=shots / "annotator_brush.png")
    page.click("#hm-brush-apply")
    expect(page.locator("#hm-message")).to_contain_text("Saved brush edit as version 3")
    rec = _head(ds.store_path, key)
    assert (rec.version, rec.source, rec.author) == (3, "human", "alice")
    assert rec.area > clicked.sum() and rec.mask()[clicked].all()

    page.locator("body").press("z")  # keyboard: undo
    expect(page.locator("#hm-message")).to_contain_text("Undone")
    rec = _head(ds.store_path, key)
    assert rec.version == 4 and np.array_equal(rec.mask(), clicked) and rec.author == "alice"

    page.locator("body").press("y")  # keyboard: accept
    expect(page.locator("#hm-message")).to_contain_text("Marked 1 frame accepted")
    rec = _head(ds.store_path, key)
    assert (rec.version, rec.status, rec.author) == (5, "accepted", "alice")
    with MaskStore(ds.store_path, create=False) as store:
        assert [r.version for r in store.history(key)] == [1, 2, 3, 4, 5]

    page.locator("#hm-prop-n input").fill("2")
    page.click("#hm-prop-fwd")
    expect(page.locator("#hm-message")).to_contain_text("Preview of 2 propagated frames")
    page.locator("body").press("d")  # keyboard: next frame shows the unsaved preview
    expect(page.locator("#hm-info")).to_contain_text("PREVIEW (not saved)")
    assert _head(ds.store_path, ds.samples[0].frames[4]).version == 1
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=shots / "annotator_propagate.png")
    page.click("#hm-prop-save")
    expect(page.locator("#hm-message")).to_contain_text("Saved 2 propagated frames")
    rec = _head(ds.store_path, ds.samples[0].frames[4])
    assert (rec.version, rec.source, rec.author) == (2, "propagated", "alice")
    page.context.close()


def test_lock_for_others_and_stale_save_refused(env):
    ds, server, browser, shots = env
    sid = ds.samples[1].sample_id
    key = ds.samples[1].frames[0]
    tab1 = _login(browser, server, "alice")
    _open(tab1, sid)
    bob = _login(browser, server, "bob")
    bob.wait_for_selector("#hm-open")
    bob.locator("#hm-sample-id input, #hm-sample-id textarea").first.fill(sid)
    bob.click("#hm-open")
    expect(bob.locator("#hm-message")).to_contain_text("being edited by alice")
    bob.screenshot(path=shots / "annotator_locked.png")

    tab2 = _login(browser, server, "alice")  # the same annotator in a second tab
    _open(tab2, sid)
    _click_frame(tab1, 100, 80)
    expect(tab1.locator("#hm-message")).to_contain_text("Saved version 2")
    _click_frame(tab2, 200, 150)  # tab2 still shows version 1
    expect(tab2.locator("#hm-message")).to_contain_text("Refused, not saved")
    tab2.screenshot(path=shots / "annotator_stale.png")
    rec = _head(ds.store_path, key)
    assert rec.version == 2 and rec.mask()[80, 100] and not rec.mask()[150, 200]

    tab1.context.close()  # alice still has the sample open in tab2: the lease stays
    time.sleep(1.0)
    with MaskStore(ds.store_path, create=False) as store:
        assert lock_holder(store, sid).owner == "alice"
    tab2.context.close()  # her last tab: the lease is given back at once, not after --lock-ttl
    deadline = time.time() + 10
    with MaskStore(ds.store_path, create=False) as store:
        while lock_holder(store, sid) is not None and time.time() < deadline:
            time.sleep(0.2)
        assert lock_holder(store, sid) is None
    bob.click("#hm-open")
    expect(bob.locator("#hm-message")).to_contain_text(f"Opened {sid}")
    bob.context.close()


def test_flag_reason_filter_and_adding_the_synchronized_partner(env):
    ds, server, browser, shots = env
    h, w = SIZE
    pairs = [[person_mask(0.25 * w, h * (0.4 + 0.04 * t), h, w), person_mask(0.7 * w, h * (0.4 + 0.04 * t), h, w)]
             for t in range(4)]  # fmt: skip
    keys = add_flagged_sample(ds, "sync/001", pairs, 0, "synchronized event but one athlete found")
    page = _login(browser, server, "alice")
    page.wait_for_selector("#hm-reason")
    page.locator("#hm-reason input, #hm-reason textarea").first.fill("one athlete")
    page.locator("#hm-reason input, #hm-reason textarea").first.press("Enter")
    queue = page.locator("#hm-queue")
    expect(queue).to_contain_text("sync/001")
    expect(queue).not_to_contain_text("diving/001")
    page.click("#hm-next-flagged")
    expect(page.locator("#hm-info")).to_contain_text("flag reason: synchronized event but one athlete found")
    expect(page.locator("#hm-info")).to_contain_text("frame 1/4")

    page.locator("body").press("g")  # keyboard: tick Add to mask
    expect(page.locator("#hm-add input[type=checkbox]")).to_be_checked()
    expect(page.locator("#hm-info")).to_contain_text("(add to mask)")
    y = int(h * 0.4)
    _click_frame(page, int(0.7 * w), y)  # one positive click on the partner
    expect(page.locator("#hm-message")).to_contain_text("added to the earlier mask")
    m = _head(ds.store_path, keys[0]).mask()
    assert m[pairs[0][0]].all() and m[y, int(0.7 * w)]  # the first diver kept, the partner added
    page.click("#hm-accept-sample")
    expect(page.locator("#hm-message")).to_contain_text("Marked 4 frames accepted")
    expect(queue).not_to_contain_text("sync/001")  # no flagged frame with that reason is left
    page.context.close()


def test_wrong_password_refused(env):
    ds, server, browser, shots = env
    page = _login(browser, server, "alice", "not-her-password")
    expect(page.get_by_text("Incorrect Credentials")).to_be_visible(timeout=10000)
    assert page.locator("#hm-open").count() == 0
    page.context.close()


def test_server_killed_and_restarted_loses_nothing(env):
    ds, server, browser, shots = env
    key = ds.samples[0].frames[3]
    before = _head(ds.store_path, key)
    server.kill()
    server.start()
    page = _login(browser, server, "alice")
    _open(page, ds.samples[0].sample_id)
    for i in (2, 3, 4):
        page.click("#hm-next")
        expect(page.locator("#hm-info")).to_contain_text(f"frame {i}/8")
    expect(page.locator("#hm-info")).to_contain_text(f"version {before.version} · source human · status accepted")
    assert _head(ds.store_path, key) == before
    page.context.close()


def test_shortcuts_work_after_the_mouse_used_a_checkbox_or_the_click_mode(env):
    """The listener skipped every <input>: after a click on a checkbox or a radio button (which
    keep the focus) no shortcut worked, and the arrow keys changed the click mode instead."""
    ds, server, browser, shots = env
    page = _login(browser, server, "bob")
    _open(page, ds.samples[1].sample_id)
    info = page.locator("#hm-info")
    expect(info).to_contain_text("frame 1/8")
    onion = page.locator("#hm-onion input[type=checkbox]")
    onion.click()
    expect(onion).to_be_focused()
    page.keyboard.press("d")
    expect(info).to_contain_text("frame 2/8")
    negative = page.locator("#hm-mode input[type=radio][value=negative]")
    negative.click()
    expect(info).to_contain_text("mode negative")
    expect(negative).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(info).to_contain_text("frame 3/8")
    expect(negative).to_be_checked()  # the arrow moved the frame, not the click mode
    page.keyboard.press("CapsLock")
    page.keyboard.press("Z")  # z with Caps Lock: undo, not redo
    expect(page.locator("#hm-message")).to_contain_text("Nothing to undo")
    page.context.close()


def test_brush_strokes_survive_a_save_refused_for_a_newer_version(env):
    """A re-run writes the frame while the strokes are in the editor: the save is refused, the editor
    shows the new version with the same strokes, and a second save applies them to it."""
    ds, server, browser, shots = env
    sid, key = ds.samples[1].sample_id, ds.samples[1].frames[0]
    page = _login(browser, server, "alice")
    _open(page, sid)
    _brush_stroke(page, (0.5, 0.3), 10, (4, 2))
    with MaskStore(ds.store_path, create=False) as store:  # a build-masks re-run meanwhile
        head = store.current_mask(key)
        newer = np.zeros(SIZE, bool)
        newer[200:230, 250:300] = True
        store.put_mask(key, MaskWrite(mask=newer), author="build-masks", expected_version=head.version)
    page.click("#hm-brush-apply")
    expect(page.locator("#hm-message")).to_contain_text("changed since it was loaded into the brush")
    time.sleep(1.0)  # the editor reloads with the new version, the strokes drawn on it
    page.click("#hm-brush-apply")
    expect(page.locator("#hm-message")).to_contain_text(f"Saved brush edit as version {head.version + 2}")
    m = _head(ds.store_path, key).mask()
    assert m[200:230, 250:300].all() and m.sum() > newer.sum()  # the newer mask and the strokes
    page.context.close()
