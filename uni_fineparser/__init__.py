"""Uni-FineParser: I3D with mask attention, step queries and contrastive regression (see docs/model.md).

Importing this package imports torch; ``import hmtools`` never does.
"""

from uni_fineparser.config import ModelConfig, RunConfig, TrainConfig, load_run_config
from uni_fineparser.evaluate import EvalResult, evaluate_split
from uni_fineparser.mask_source import MaskSource, open_mask_source
from uni_fineparser.model import UniFineParser
from uni_fineparser.run import evaluate_checkpoint, train_from_dataset, train_per_class
from uni_fineparser.train import train

__all__ = [
    "EvalResult",
    "MaskSource",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "UniFineParser",
    "evaluate_checkpoint",
    "evaluate_split",
    "load_run_config",
    "open_mask_source",
    "train",
    "train_from_dataset",
    "train_per_class",
]
