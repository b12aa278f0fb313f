"""How an exception reads in a log line or an error message: its type's name and its message, once."""

from __future__ import annotations

__all__ = ["describe"]


def describe(exc: BaseException) -> str:
    """``Type: message``, without doubling the type when the message already starts with it.

    aiokafka's errors do (``str(KafkaConnectionError(...))`` is ``"KafkaConnectionError: ..."``),
    so a plain ``f"{type(exc).__name__}: {exc}"`` would print the name twice.
    """
    text, name = str(exc), type(exc).__name__
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
