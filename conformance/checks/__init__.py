"""Validator: pure checks over one message, each finding citing a requirement ID."""
