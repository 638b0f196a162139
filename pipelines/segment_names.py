"""Valid ``--segmenter`` names, importable without torch or segment_anything."""

SEGMENTER_NAMES = ("sam_vit_b", "sam_vit_l", "sam_vit_h", "lite")
"""The keys of ``pipelines.segment.SEGMENTERS`` plus ``lite`` (checked equal by a test)."""
