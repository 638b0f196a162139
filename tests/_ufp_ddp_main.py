"""Training entry point for subprocess tests: ``[torchrun ...] tests/_ufp_ddp_main.py DIR [key=value ...]``.

Reads ``DIR/samples.pkl`` (written by the test) and trains the tiny preset (DDP on gloo under
torchrun), with ``key=value`` overrides after the defaults.
"""

from __future__ import annotations

import logging
import pickle
import sys
from pathlib import Path

from uni_fineparser.config import load_run_config
from uni_fineparser.mask_source import open_mask_source
from uni_fineparser.train import train

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    d = Path(sys.argv[1])
    samples = pickle.loads((d / "samples.pkl").read_bytes())
    cfg = load_run_config(
        "tiny", overrides=["train.epochs=1", "train.val_fraction=0.25", "train.eval_every=1", *sys.argv[2:]]
    )
    train(cfg, samples, open_mask_source(d / "m.db"), d / "root", d / "out", device="cpu")
