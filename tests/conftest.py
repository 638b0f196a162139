"""Test-wide settings: offline environment for ultralytics/gradio, the ``gpu`` marker, shared paths."""

from __future__ import annotations

import http.server
import os
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_ANNOTATIONS = REPO.parent / "shared" / "real_annotations"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="hmtools-yolo-"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without CUDA (with the reason), and ``slow`` tests unless asked for."""
    markexpr = config.getoption("-m") or ""
    cuda = False
    if any("gpu" in item.keywords for item in items):
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "slow" in item.keywords and "slow" not in markexpr:
            item.add_marker(pytest.mark.skip(reason="slow test: run with -m slow"))


@pytest.fixture()
def http_root(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A local HTTP server on a free port serving the folder ``tmp_path/srv``: yields (folder, base URL)."""
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture()
def ds(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The annotator tests' small dataset with a built store (``_annotator_fixtures.make_dataset``)."""
    from _annotator_fixtures import make_dataset

    return make_dataset(tmp_path)


@pytest.fixture()
def ctx(ds):  # type: ignore[no-untyped-def]
    """An annotator ``AppContext`` over ``ds``: its store opened for writing, frames from its root,
    the fake segmenter; the store is closed after the test."""
    from annotator_app.backend import FakeBackend
    from annotator_app.frames import FrameSource
    from annotator_app.state import AppContext
    from hmtools.store import MaskStore

    store = MaskStore(ds.store_path, create=False)
    yield AppContext(store=store, frames=FrameSource(ds.root), backend=FakeBackend(radius=0.1), min_display_width=1)
    store.close()
