"""Trainers of the reference fine-tuned models: `TRAINERS[name](out_dir, seed, progress) -> TrainedModel`.

`RUNS[name].sources` are the code files that decide a trainer's result: the export's fingerprints hash them.
"""

from export.train import digits, digits_mobilenet, sentiment, sentiment_bert
from export.train.base import TrainedModel

TRAINERS = {
    "digits": digits.train,
    "digits_mobilenet": digits_mobilenet.train,
    "sentiment": sentiment.train,
    "sentiment_bert": sentiment_bert.train,  # the torch extra (imported inside its functions)
}
RUNS = {
    "digits": digits.RUN,
    "digits_mobilenet": digits_mobilenet.RUN,
    "sentiment": sentiment.RUN,
    "sentiment_bert": sentiment_bert.RUN,
}

__all__ = ["RUNS", "TRAINERS", "TrainedModel"]
