"""Trainers of the reference fine-tuned models: `TRAINERS[name](out_dir, seed, progress) -> TrainedModel`."""

from export.train import digits, sentiment
from export.train.base import TrainedModel

TRAINERS = {
    "digits": digits.train,
    "sentiment": sentiment.train,
}

__all__ = ["TRAINERS", "TrainedModel"]
