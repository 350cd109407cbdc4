"""Errors of the modelling stage that are the user's to fix (the CLI prints them, no traceback)."""

from __future__ import annotations


class ModelInputError(ValueError):
    """A feature frame the model cannot score (features missing)."""


class ModelNotFound(LookupError):
    """A model URI that names no model MLflow can load, or not a pdflow PD model."""


class NoUsableModel(ValueError):
    """No candidate ranks loans better than chance out of fold: too few bads to learn from."""


class RegistryError(LookupError):
    """A registry action that cannot be done: no such version, nothing to roll back to."""


class NoReference(ModelInputError):
    """A model registered without the monitoring reference (before monitoring existed)."""
