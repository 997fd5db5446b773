"""Typed errors. Each names what is wrong and carries the fix; the CLI prints both, exit 2."""

from __future__ import annotations

from contextvars import ContextVar


class XpuportError(Exception):
    """Base of every error xpuport raises on purpose."""

    exit_code = 2

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}"


class ModelFileError(XpuportError):
    """The model file is missing, not ONNX, truncated, too large or fails the checker."""


class ExternalDataError(ModelFileError):
    """An initializer's external data is missing or points outside the model's folder."""


class ExportError(XpuportError):
    """torch could not export the module, or the factory/inputs given are wrong."""


class CanonicalizeError(XpuportError):
    """The graph could not be brought to the pinned opset or its shapes inferred."""


class UnknownBackendError(XpuportError):
    """No backend of that name is registered, or it failed to load."""


class PluginError(XpuportError):
    """A backend plugin breaks the contract (wrong API version, not exactly one Backend)."""


class ProfileError(XpuportError):
    """A hardware profile is unknown, malformed or breaks an invariant."""


class UnsupportedOpError(XpuportError):
    """The backend declined nodes of the graph and fallback is not allowed."""


class CompileError(XpuportError):
    """TVM failed to import, lower or build the graph."""


class ArtifactError(XpuportError):
    """An artifact directory is missing files, tampered with, or built by other versions."""


class DeviceUnavailableError(XpuportError):
    """The backend's device is not present on this machine (compiling still works)."""


class InputError(XpuportError):
    """Inputs given at run time do not match the artifact's signature."""


class ToleranceExceededError(XpuportError):
    """A comparison against a peer engine exceeded the stated tolerance."""

    exit_code = 1


class TuningError(XpuportError):
    """A tuning database that does not belong to this profile or TVM, or a failed tuning run."""


_RAISED_IN_PASS: ContextVar[XpuportError | None] = ContextVar("xpuport_raised_in_pass",
                                                              default=None)


def raised_in_pass(error: XpuportError) -> XpuportError:
    """Keep `error`, raised inside a TVM pass, for whoever runs the build: TVM's FFI turns an
    exception crossing it into a RuntimeError that keeps only the message."""
    _RAISED_IN_PASS.set(error)
    return error


def take_raised_in_pass() -> XpuportError | None:
    """The error a pass raised in this thread since the last call, if any."""
    error = _RAISED_IN_PASS.get()
    _RAISED_IN_PASS.set(None)
    return error
