"""Named errors. Step Functions sees the class name as the error name (Retry/Catch match on it)."""

from __future__ import annotations


class SluiceError(Exception):
    """Base class of every error Sluice raises on purpose."""


class ConfigurationError(SluiceError):
    """The function's environment is incomplete."""


class SpecError(SluiceError):
    """A dataset or model spec is invalid; the message names the field."""


class UnknownDatasetError(SluiceError):
    """No dataset spec matches the uploaded object."""


class SourceObjectError(SluiceError):
    """The uploaded object cannot be read (missing, empty, not text)."""


class MissingColumnsError(SluiceError):
    """Required columns are absent from the file's header."""

    def __init__(self, missing: list[str], header: list[str]):
        self.missing = missing
        self.header = header
        found = ", ".join(header) or "(empty)"
        super().__init__(f"missing required column(s): {', '.join(missing)}; header found: {found}")


class QualityGateError(SluiceError):
    """Too many rows were quarantined, or too few clean rows remain to train on."""


class TrainingError(SluiceError):
    """Training could not produce a model (for example too few rows or classes)."""


class ParityError(SluiceError):
    """The exported ONNX model does not predict what the native model predicts."""


class RegistryError(SluiceError):
    """A registry read or write failed."""


class AliasConflictError(RegistryError):
    """An alias moved under us: the conditional write saw another version than expected."""


class PromotionRefusedError(RegistryError):
    """A version the gates rejected cannot become champion, and there is nothing to roll back to."""


class ModelNotFoundError(RegistryError):
    """No such model, version or alias in the registry."""


class ArtifactIntegrityError(RegistryError):
    """A stored artifact does not match the sha256 recorded at registration."""
