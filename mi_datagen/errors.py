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
