"""A build-masks worker with fake models, run as a subprocess by the pipeline tests.

Usage: python tests/_pipeline_worker.py ROOT STORE N_SAMPLES DELAY_S [rank-stores]
(under torchrun it builds its rank's share and rank 0 prints the merged summary).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hmtools.schema import Sample  # noqa: E402
from pipelines.config import BuildConfig, FramesConfig  # noqa: E402
from pipelines.job import run_sharded  # noqa: E402
from pipelines.run import Models  # noqa: E402
from tests._pipeline_fixtures import BlobDetector, ColourSegmenter  # noqa: E402


def samples(root: Path, n: int) -> list[Sample]:
    """The first ``n`` samples of the AQA-7-layout dataset at ``root``, through the real adapter."""
    from hmtools.datasets import load_dataset

    return load_dataset("aqa7", root).samples[:n]


def main() -> None:
    root, store, n, delay = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    det = BlobDetector()

    def slow_detect(frames):
        time.sleep(delay)
        return det(frames)

    cfg = BuildConfig(device="cpu", frames=FramesConfig(batch_size=4, workers=1, prefetch=1))
    summary = run_sharded(
        samples(root, n),
        root,
        store,
        cfg,
        lambda c, d: Models(slow_detect, ColourSegmenter(), {"fake": "1"}),
        progress=False,
        rank_stores="rank-stores" in sys.argv[5:],
    )
    if os.environ.get("RANK", "0") == "0":
        print(
            f"built={summary.built} done={summary.skipped_done} frames={summary.frames} samples={summary.samples}",
            flush=True,
        )


if __name__ == "__main__":
    main()
