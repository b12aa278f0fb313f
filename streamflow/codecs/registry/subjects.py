"""Subject name strategies: under which subject a writer schema is registered."""

from __future__ import annotations

from typing import Literal

SubjectStrategy = Literal["topic", "record", "topic_record"]


def subject_name(strategy: SubjectStrategy, topic: str | None, record: str | None, key: bool = False) -> str:
    """The subject: ``<topic>-value`` (topic), ``<record>`` (record) or ``<topic>-<record>`` (topic_record).

    ``key`` makes the topic strategy's suffix ``-key``. Raises ValueError when
    the strategy needs a topic or record name that is missing.
    """
    if strategy in ("topic", "topic_record") and not topic:
        raise ValueError(f"subject strategy {strategy!r} needs `topic`")
    if strategy in ("record", "topic_record") and not record:
        raise ValueError(f"subject strategy {strategy!r} needs a named schema (an Avro record's name, "
                         f"a protobuf message's full name, a JSON schema's `title`)")
    if strategy == "topic":
        return f"{topic}-{'key' if key else 'value'}"
    if strategy == "record":
        return str(record)
    return f"{topic}-{record}"
