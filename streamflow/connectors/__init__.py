"""Built-in connectors. Importing this package registers them."""

from . import (  # noqa: F401
    files_sink,
    files_source,
    generator,
    http_sink,  # noqa: F401
    http_source,  # noqa: F401
    kafka,  # noqa: F401
    memory,  # noqa: F401
    postgres_sink,
    postgres_source,
    redis_sink,
    redis_source,
    stdio,
)
