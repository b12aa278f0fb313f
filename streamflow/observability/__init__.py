"""Observability: logging, live progress, metrics and the operations HTTP server."""

from .logging import redact, register_secret, setup_logging

__all__ = ["redact", "register_secret", "setup_logging"]
