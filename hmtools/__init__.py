"""hmtools: human-centric foreground mask datasets for action quality assessment.

``import hmtools`` stays light: it never imports torch, gradio or ultralytics. Heavy packages
are imported inside the command or stage that needs them.
"""

from __future__ import annotations

from hmtools.errors import (
    ConfigError,
    DataFormatError,
    HMToolsError,
    InputError,
    LockedError,
    StaleVersionError,
)
from hmtools.schema import SOURCES, SPLITS, STATUSES, Problem, Sample

__version__ = "0.1.0"

__all__ = [
    "SOURCES",
    "SPLITS",
    "STATUSES",
    "ConfigError",
    "DataFormatError",
    "HMToolsError",
    "InputError",
    "LockedError",
    "Problem",
    "Sample",
    "StaleVersionError",
    "__version__",
]
