"""What `predict` returns: `Prediction`s for outputs the server has labels for, arrays for the others.

The labels come from the server, never from this package: the model's config says which outputs have a
`label_filename`, and Triton's classification extension (`class_count` = the number of classes) names every class
once per client, model and output (`parse_labels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from typing import Any, Iterator, Optional, Union

import numpy as np

from .errors import InvalidInput, ServerError
from .metadata import ModelMetadata

PROBABILITIES = "probabilities"  # the contract models' output


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    # every label's score in the model's label order; with predict(top=K) the K best, best first
    scores: Mapping[str, float]


@dataclass(frozen=True, eq=False)
class ModelOutput(Mapping):
    """One item's outputs: output name -> `Prediction` (outputs with labels) or `np.ndarray` (the others, without
    the batch axis). `.prediction` is the Prediction of the model's only labelled output."""

    model: str
    values: Mapping[str, Union[Prediction, np.ndarray]]

    def __getitem__(self, name: str) -> Union[Prediction, np.ndarray]:
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def prediction(self) -> Prediction:
        labelled = [name for name, value in self.values.items() if isinstance(value, Prediction)]
        if len(labelled) != 1:
            raise InvalidInput(
                f"{self.model}: {'outputs ' + ', '.join(labelled) + ' have' if labelled else 'no output has'} "
                f"labels, so there is no single prediction; read the one you mean by name, e.g. "
                f"result[{(labelled or list(self.values) or ['name'])[0]!r}]", model=self.model)
        return self.values[labelled[0]]


def label_candidates(metadata: ModelMetadata, config: Any, batched: bool) -> dict[str, int]:
    """Output name -> number of classes, for the outputs whose config names a label file.

    The class count is one item's number of values (Triton classifies each batch item's values, flattened).
    Outputs with a variable dimension are left out: their class count is not known before inference.
    """
    if config is None:
        return {}
    with_labels = {output.name for output in config.output if output.label_filename}
    counts = {}
    for spec in metadata.outputs:
        dims = spec.shape[1:] if batched else spec.shape
        if spec.name in with_labels and all(d > 0 for d in dims):
            counts[spec.name] = prod(dims)
    return counts


def parse_labels(entries: np.ndarray, count: int) -> Optional[tuple[str, ...]]:
    """Labels by class index from one item's classification strings b"score:index:label"; None if the server
    named no class (an output without a label file answers b"score:index")."""
    labels: list[Optional[str]] = [None] * count
    for entry in np.asarray(entries).reshape(-1):
        parts = (entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)).split(":", 2)
        index = int(parts[1])
        if len(parts) == 3 and 0 <= index < count:
            labels[index] = parts[2]
    if all(label is None for label in labels):
        return None
    # The label file may be shorter than the output; Triton then reports those classes by index only.
    return tuple(str(i) if label is None else label for i, label in enumerate(labels))


def check_top(model: str, top: Optional[int]) -> None:
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InvalidInput(f"{model}: top must be a positive integer (how many labels to keep), got {top!r}",
                           model=model)


def to_prediction(values: np.ndarray, labels: tuple[str, ...], top: Optional[int]) -> Prediction:
    scores = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep = order[:top] if top is not None else range(len(scores))
    return Prediction(label=labels[int(order[0])], score=float(scores[order[0]]),
                      scores={labels[int(i)]: float(scores[i]) for i in keep})


def to_outputs(model: str, raw: Mapping[str, np.ndarray], labels: Mapping[str, Optional[tuple[str, ...]]],
               single: bool, batched: bool, top: Optional[int] = None):
    """One ModelOutput per item: a single item in gives a single ModelOutput out, a batch gives a list."""
    for name, array in raw.items():
        names = labels.get(name)
        per_item = array[0].size if batched and len(array) else array.size
        if names is not None and per_item != len(names):
            raise ServerError(f"{model}: output '{name}' has {per_item} values per item but the server names "
                              f"{len(names)} classes", model=model)
    count = len(next(iter(raw.values()))) if batched and raw else 1
    items = []
    for i in range(count):
        values = {}
        for name, array in raw.items():
            row = array[i] if batched else array
            names = labels.get(name)
            values[name] = to_prediction(row, names, top) if names is not None else row
        items.append(ModelOutput(model, values))
    return items[0] if single else items


def predictions_of(found: Union[ModelOutput, list], output: str, single: bool):
    """The contract helpers' answer: output's Prediction per item (one, or a list for a batch)."""
    items = [found] if isinstance(found, ModelOutput) else found
    for item in items:
        if not isinstance(item[output], Prediction):
            raise InvalidInput(f"{item.model}: output '{output}' has no labels on the server (its config names no "
                               f"label_filename); use predict() or infer() for its raw values", model=item.model)
    answers = [item[output] for item in items]
    return answers[0] if single else answers
