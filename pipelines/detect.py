"""Person detection with ultralytics YOLO, batched over frames (the only ultralytics importer).

``--detector`` takes a weights file (``.pt``; ``.yaml`` builds random weights, for tests) or a
name of :data:`DETECTORS`; a name that is not on disk is downloaded by ultralytics itself, which
needs internet. Detections are returned per frame as ``(N, 5)`` float32 arrays
``[x1, y1, x2, y2, confidence]`` in frame pixels, persons only.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hmtools.errors import HMToolsError, InputError
from pipelines.batching import BatchSize, run_batched

log = logging.getLogger(__name__)

DETECTORS: dict[str, str] = {
    "yolo11n": "yolo11n.pt",
    "yolo11s": "yolo11s.pt",
    "yolo11m": "yolo11m.pt",
    "yolo11l": "yolo11l.pt",
    "yolo11x": "yolo11x.pt",
    "yolov8n": "yolov8n.pt",
    "yolov8s": "yolov8s.pt",
    "yolov8m": "yolov8m.pt",
    "yolov8l": "yolov8l.pt",
    "yolov8x": "yolov8x.pt",
}
"""Detector name -> ultralytics weights file (downloaded by ultralytics on first use)."""


@dataclass
class Detector:
    """A loaded YOLO model and how to call it.

    Attributes:
        model: ``ultralytics.YOLO``.
        device: Torch device string.
        person_classes: Class ids that are a person.
        conf: Minimum confidence kept.
        imgsz: Inference size (longest side, pixels).
        half: fp16 inference (CUDA only).
        batch: Frames per call (halved on CUDA out-of-memory).
    """

    model: Any
    device: str
    person_classes: tuple[int, ...]
    conf: float = 0.2
    imgsz: int = 640
    half: bool = False
    batch: BatchSize = field(default_factory=lambda: BatchSize(16))


def person_classes(names: dict[int, str]) -> tuple[int, ...]:
    """Which classes of a detector are people.

    ``person`` (COCO) when the model has it; class 0 for an 80-class model without names (COCO
    order, e.g. built from a yaml); otherwise every class (a person-only detector whose classes
    are poses or states, such as ``{0: Normal, 1: Fall}``).
    """
    for idx, name in names.items():
        if str(name).lower() == "person":
            return (int(idx),)
    if len(names) == 80:
        return (0,)
    return tuple(int(i) for i in names)


def build_detector(
    spec: str, device: str = "cpu", *, conf: float = 0.2, imgsz: int = 640, batch_size: int = 16
) -> Detector:
    """Load a detector from a weights file or a name of :data:`DETECTORS`.

    Raises:
        InputError: neither an existing file nor a known name (lists the names), or the named
            weights could not be fetched (says what to pass instead).
    """
    YOLO = _yolo_class()
    path = Path(spec)
    names = ", ".join([*DETECTORS, "lite"])
    if path.suffix in (".yaml", ".yml"):
        target = spec  # architecture only: random weights (tests, benchmarks)
    elif path.is_file():
        target = str(path)
    elif spec in DETECTORS:
        target = DETECTORS[spec]
    elif path.suffix:
        raise InputError(
            f"detector weights {path} not found; pass --detector FILE of YOLO weights, or a name ({names})"
        )
    else:
        raise InputError(f"unknown detector {spec!r}; valid names: {names}; or pass a weights file")
    from PIL import Image

    pil_open = Image.open
    try:
        model = YOLO(target)
        classes = model.names  # a file of another format (any suffix) loads lazily and fails only here
    except (TypeError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError) as e:
        if not Path(target).is_file():
            raise
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]  # ultralytics: TypeError for a corrupt file
        raise InputError(
            f"detector weights {target} cannot be loaded ({why}); pass --detector FILE of YOLO detection weights"
        ) from e
    except (ConnectionError, OSError, FileNotFoundError) as e:
        raise InputError(
            f"could not load detector {spec!r} ({e}); with no internet, download {target} elsewhere and pass --detector PATH"
        ) from e
    finally:
        Image.open = pil_open  # modules ultralytics imports while loading patch it again (see _yolo_class)
    if model.task != "detect":
        raise InputError(f"detector {spec} is a {model.task!r} model; pass a YOLO detection model")
    half = device.startswith("cuda")
    return Detector(model, device, person_classes(classes), conf, imgsz, half, BatchSize(batch_size))


def detect_people(detector: Detector, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Detect people in frames, batched.

    Args:
        detector: From :func:`build_detector`.
        frames: ``(H, W, 3)`` uint8 RGB frames.

    Returns:
        Per frame an ``(N, 5)`` float32 array ``[x1, y1, x2, y2, conf]`` (XYXY pixels), by falling confidence.
    """

    def call(chunk: Sequence[np.ndarray]) -> list[np.ndarray]:
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in chunk]  # ultralytics reads numpy as BGR
        results = detector.model.predict(
            bgr,
            conf=detector.conf,
            classes=list(detector.person_classes),
            imgsz=detector.imgsz,
            device=detector.device,
            verbose=False,
            **_precision(detector.half),
        )
        out = []
        for r in results:
            xyxy = r.boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4)
            conf = r.boxes.conf.cpu().numpy().astype(np.float32).reshape(-1, 1)
            dets = np.concatenate([xyxy, conf], axis=1)
            out.append(dets[np.argsort(-dets[:, 4], kind="stable")])
        return out

    if not frames:
        return []
    try:
        return run_batched(call, list(frames), detector.batch)
    except RuntimeError as e:
        raise HMToolsError(f"person detection failed: {e}") from e


def _precision(half: bool) -> dict[str, Any]:
    """fp16 inference on CUDA: ``quantize=16`` in ultralytics >= 8.4, ``half=True`` before it."""
    if not half:
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}


def _yolo_class() -> Any:
    """``ultralytics.YOLO``, imported without leaving ultralytics' process-wide ``PIL.Image.open`` patch.

    Importing ultralytics replaces ``PIL.Image.open`` for the whole process (HEIC support that
    imports ``pi_heif`` on any unreadable file, raising ModuleNotFoundError where PIL raises
    UnidentifiedImageError). We feed it arrays, never files, so PIL's own function is put back
    and the rest of hmtools keeps PIL's documented errors.
    """
    from PIL import Image

    original = Image.open
    from ultralytics import YOLO

    Image.open = original
    return YOLO
