"""Built-in transforms. Importing this package registers them."""

from . import batching, dedupe, enrich, fields, functions, interval_join, join, parse, rate_limit, window  # noqa: F401  # noqa: F401
