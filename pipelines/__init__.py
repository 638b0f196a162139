"""Automatic athlete masks: frames -> person detection -> the judged athlete(s) -> SAM -> temporal repair.

Heavy backends are imported only by their stage modules (``pipelines.detect`` for ultralytics,
``pipelines.segment`` for segment_anything, ``pipelines.lite`` for mediapipe); importing this
package imports none of them.
"""

from pipelines.build import BuildSummary, build_masks
from pipelines.config import BuildConfig
from pipelines.run import Models, build_sample_masks
from pipelines.segment_types import ImageEmbedding, Prompt
from pipelines.select import Selection, select_athletes

__all__ = [
    "BuildConfig",
    "BuildSummary",
    "ImageEmbedding",
    "Models",
    "Prompt",
    "Selection",
    "build_masks",
    "build_sample_masks",
    "select_athletes",
]
