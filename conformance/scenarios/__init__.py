"""Scripted scenarios, one module per family; importing the package registers them all."""

from . import acceptance, delivery  # noqa: F401
