"""Logging setup: readable text on a terminal, JSON lines in a container, secrets redacted in both.

Values interpolated from environment variables whose names look secret
(``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ``*KEY*``, ``*CREDENTIAL*``) are
remembered by the config loader and replaced by ``***`` in every log line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

#: Name of the handler `setup_logging` installs (a later call replaces it).
_HANDLER_NAME = "streamflow"

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
#: Shorter values are not redacted: replacing every "1" or "id" in the logs would hide everything.
MIN_SECRET_LENGTH = 4
FORMATS = ("text", "json")
MASK = "***"

_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret."""
    return bool(SECRET_NAME.search(name))


def register_secret(name: str, value: str) -> None:
    """Remember ``value`` (taken from env var ``name``) for redaction if ``name`` looks secret."""
    global _pattern
    if looks_secret(name) and len(value) >= MIN_SECRET_LENGTH and value not in _secrets:
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial masks
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by ``***``."""
    if _pattern is None or not isinstance(text, str):
        return text
    return _pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Handler filter that masks secrets in a record's message and string ``extra`` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        for key, value in _extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record (pipeline, stage, partition, offset …)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in _extra_fields(record).items():
            out.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info or record.exc_text:
            out["exc"] = redact(record.exc_text or self.formatException(record.exc_info))  # type: ignore[arg-type]
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """Plain ``time level logger: message`` lines (non-terminal stderr), redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_console: Any = None


def get_console() -> Any:
    """The rich `Console` on stderr shared by log output and the live progress display."""
    global _console
    if _console is None or _console.file is not sys.stderr:
        from rich.console import Console

        _console = Console(file=sys.stderr)
    return _console


def setup_logging(format: str | None = None, level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send log records to ``stream`` (stderr) as ``text`` or ``json``.

    The format defaults to ``$STREAMFLOW_LOG_FORMAT``, else text. Text uses
    rich on a terminal and plain lines otherwise. Replaces the handler a
    previous call installed; returns the new one.
    """
    quiet_retried_library_errors()
    global _console
    stream = stream if stream is not None else sys.stderr
    format = (format or os.environ.get("STREAMFLOW_LOG_FORMAT") or "text").lower()
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}; expected one of: {', '.join(FORMATS)}")
    handler: logging.Handler
    if format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    elif stream.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        _console = Console(file=stream)
        handler = RichHandler(console=_console, show_path=False, rich_tracebacks=False)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def log_config_error(exc: Exception) -> None:
    """Log a config error as ERROR records: one per `Issue` (with its file, line, column and field
    path as fields) for an ``InvalidConfig``, else one with the error's text."""
    config_log = logging.getLogger("streamflow.config")
    issues = getattr(exc, "issues", None)
    if not issues:
        config_log.error("config error: %s", exc, extra={"error": "config"})
        return
    for issue in issues:
        config_log.error("config error: %s", issue, extra={
            "error": "config", "location": issue.location, "field": issue.path,
            "line": issue.line, "column": issue.column, "problem": issue.message})


class RetriedLibraryErrors(logging.Filter):
    """Logs a library's ERROR about a condition it retries by itself at INFO instead.

    aiokafka logs ``Group Coordinator Request failed: [Error 15]
    GroupCoordinatorNotAvailableError`` at ERROR on the first start against a
    new broker (while the broker creates its offsets topic) and then simply
    retries: a healthy start has no ERROR line. Only errors aiokafka marks
    ``retriable`` are lowered; a fatal one stays an ERROR.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.levelno == logging.ERROR and isinstance(record.msg, str)
                and record.msg.startswith("Group Coordinator Request failed")
                and record.args and getattr(record.args[0], "retriable", False)):  # type: ignore[index]
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_retried_library_errors() -> None:
    """Install `RetriedLibraryErrors` on the loggers it knows (once)."""
    logger = logging.getLogger("aiokafka.consumer.group_coordinator")
    if not any(isinstance(f, RetriedLibraryErrors) for f in logger.filters):
        logger.addFilter(RetriedLibraryErrors())


quiet_retried_library_errors()
