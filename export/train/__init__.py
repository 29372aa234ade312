"""Trainers of the reference fine-tuned models: `TRAINERS[name](out_dir, seed, progress) -> TrainedModel`.

`RUNS[name].sources` are the code files that decide a trainer's result: the export's fingerprints hash them.
"""

from export.train import digits, sentiment
from export.train.base import TrainedModel

TRAINERS = {
    "digits": digits.train,
    "sentiment": sentiment.train,
}
RUNS = {
    "digits": digits.RUN,
    "sentiment": sentiment.RUN,
}

__all__ = ["RUNS", "TRAINERS", "TrainedModel"]
