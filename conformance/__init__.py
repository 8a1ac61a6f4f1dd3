"""pec-conformance: conformance suite for Italian certified email (PEC)."""

__version__ = "0.1.0"
