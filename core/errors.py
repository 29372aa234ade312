"""modelport's one exception tree, split by who has to act: the user, the model's author, the server or machine, or
modelport itself. Each class carries the exit code a program returns (core/cli.py; the table is in docs/core.md).
A step's own leaves live beside the code that raises them."""

from __future__ import annotations

from dataclasses import dataclass


class ModelportError(Exception):
    """Base class: every failure modelport reports on purpose."""

    exit_code = 1


# UserError is a ValueError and ServerError a RuntimeError, so that callers written against the builtins still
# catch them.
class UserError(ModelportError, ValueError):
    exit_code = 2


class ModelError(ModelportError):
    exit_code = 1


class ServerError(ModelportError, RuntimeError):
    exit_code = 1


class BugError(ModelportError):
    exit_code = 70  # EX_SOFTWARE (sysexits.h)


# ---- the user's input ------------------------------------------------------------------------------------------

class SpecError(UserError):
    """The spec file is wrong: the user fixes models.toml. Raised before any work starts."""

    def __init__(self, model: str, field: str, value: object, allowed: str):
        self.model, self.field, self.value, self.allowed = model, field, value, allowed
        super().__init__(f"models.toml: model {model!r}, field {field!r}: got {value!r}; allowed: {allowed}")


class RepositoryError(UserError):
    """The model repository is missing, empty, or holds a model whose generated files were never exported."""


# ---- the model -------------------------------------------------------------------------------------------------

class SourceError(ModelError):
    """A model's source (Keras file, SavedModel, ONNX file, held-out data) is missing or unreadable."""


class IncompatibleModelError(ModelError):
    """The model converts but cannot be served as specified (shapes, names, ops TensorRT lacks)."""


class ParityError(ModelError):
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


# ---- the server and the machine --------------------------------------------------------------------------------

class TensorRTUnavailable(ServerError):
    """`make trt` cannot run here (no tensorrt module or no GPU)."""

    exit_code = 3


class PortInUseError(ServerError):
    """A port the server needs is already bound by another process."""

    exit_code = 2


class RuntimeMissingError(ServerError):
    """The Triton binary, its shared libraries, the python backend stub or a recent enough glibc is missing."""

    exit_code = 2


class ServerStartError(ServerError):
    """Triton started but did not become ready (a model failed to load, or the process exited)."""


class NotRunningError(ServerError):
    """`stop` / `status` found no server that `start` started."""

    exit_code = 3
