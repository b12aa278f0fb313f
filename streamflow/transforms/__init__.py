"""Built-in transforms. Importing this package registers them."""

from . import (  # noqa: F401
    batching,
    dedupe,
    enrich,
    fields,
    functions,
    interval_join,
    join,
    parse,
    rate_limit,
    schema_codec,
    window,
)
