"""The export's exceptions, split by who has to act: the spec's author, the model's author, or us."""

from __future__ import annotations

from dataclasses import dataclass


class ExportError(Exception):
    """Base class: every failure the export reports on purpose."""

    exit_code = 1


class SpecError(ExportError):
    """The spec file is wrong: the user fixes models.toml. Raised before any work starts."""

    exit_code = 2

    def __init__(self, model: str, field: str, value: object, allowed: str):
        self.model, self.field, self.value, self.allowed = model, field, value, allowed
        super().__init__(f"models.toml: model {model!r}, field {field!r}: got {value!r}; allowed: {allowed}")


class SourceError(ExportError):
    """A model's source (Keras file, SavedModel, ONNX file, held-out data) is missing or unreadable."""


class IncompatibleModelError(ExportError):
    """The model converts but cannot be served as specified (shapes, names, ops TensorRT lacks)."""


class ParityError(ExportError):
    """One or more variants failed the numeric gate; every failure is listed, not only the first."""

    def __init__(self, model: str, failures: list[GateFailure], notes: tuple[str, ...] = ()):
        self.model, self.failures = model, failures
        lines = [f"{model}: {len(failures)} parity check(s) failed; the repository was left untouched:"]
        lines += [f"  - {f}" for f in failures]
        lines += [f"  {n}" for n in notes]
        lines.append("  Fix the model or the conversion; loosen a tolerance only in [model.gate] with a reason.")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class GateFailure:
    """One failed comparison: which variant and tensor, what was measured, what was allowed."""

    variant: str
    tensor: str
    check: str
    measured: float
    tolerance: float
    batch_size: int | None = None
    reason: str = ""  # an output the gate cannot judge, or a variant that could not be built: why, in words

    def __str__(self) -> str:
        if self.reason:
            return f"{self.variant} {self.tensor!r}: {self.check}: {self.reason}" if self.tensor else self.reason
        at = f" at batch size {self.batch_size}" if self.batch_size else ""
        return f"{self.variant} {self.tensor!r}: {self.check} = {self.measured:.6g}{at}, tolerance {self.tolerance:.6g}"


class TensorRTUnavailable(ExportError):
    """`make trt` cannot run here (no tensorrt module or no GPU)."""

    exit_code = 3
