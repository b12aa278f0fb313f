"""Built-in transforms. Importing this package registers them."""

from . import batching, dedupe, enrich, fields, functions, parse, rate_limit, schema_codec, window  # noqa: F401
