"""The browser annotator (``hmtools annotate``): a Gradio page over the mask store.

Importing this package does not import gradio; :func:`annotator_app.app.build_app` does.
"""

from __future__ import annotations

from annotator_app.backend import FakeBackend, Prediction, Prompt, SamBackend, SegmentBackend, build_backend
from annotator_app.frames import FrameSource
from annotator_app.server import serve
from annotator_app.state import AppContext, SessionState

__all__ = [
    "AppContext",
    "FakeBackend",
    "FrameSource",
    "Prediction",
    "Prompt",
    "SamBackend",
    "SegmentBackend",
    "SessionState",
    "build_backend",
    "serve",
]
