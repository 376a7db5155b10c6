"""The exception hierarchy. Every error a user can trigger is one of these."""

from __future__ import annotations


class MIDatagenError(Exception):
    """Base class of all mi-datagen errors."""


class SpecError(MIDatagenError, ValueError):
    """A spec file or spec object is malformed (bad YAML, bad field, cycle, unknown node...)."""


class StructureError(MIDatagenError):
    """A model does not have the structure an operation needs (e.g. the exact structured solver)."""


class SolveError(MIDatagenError):
    """Target solving failed: the target is out of reach or the bracket holds no root."""


class ResourceError(MIDatagenError):
    """An operation would need more memory or time than allowed (e.g. a dense path at large d)."""


class ConfigError(MIDatagenError, ValueError):
    """An option value is invalid (e.g. a generation setting out of range)."""


class StoreError(MIDatagenError):
    """A dataset store is missing, incomplete, of another format, or does not match the request."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No dataset store (or no mi-datagen manifest) at the given path."""


class CheckpointError(MIDatagenError):
    """A checkpoint is missing, corrupt, or its hash does not match the recorded one."""


class CertificationError(MIDatagenError):
    """The applied map failed certification (a step is not shown to be injective)."""


class DataError(MIDatagenError, FileNotFoundError):
    """Training or evaluation images could not be found or read."""


class EstimatorError(MIDatagenError, ValueError):
    """An estimator run failed (bad input, an unknown setting, or training that diverged)."""


class DependencyError(MIDatagenError, ImportError):
    """An optional dependency that this operation needs is not installed (the message names the extra)."""


class DeviceError(ConfigError):
    """The requested device is not available on this machine."""


class UnknownNameError(MIDatagenError, KeyError):
    """A node, parameter or information quantity that the spec, table or store does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def require(module: str, extra: str = "torch"):
    """Import ``module`` or raise DependencyError naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyError(f"this needs {module!r}, which is not installed; "
                              f"install it with `pip install 'mi-datagen[{extra}]'`") from None


__all__ = ["MIDatagenError", "SpecError", "StructureError", "SolveError", "ResourceError", "ConfigError",
           "StoreError", "StoreNotFoundError", "CheckpointError", "CertificationError", "DataError",
           "EstimatorError", "DependencyError", "DeviceError", "require"]
