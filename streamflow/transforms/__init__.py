"""Built-in transforms. Importing this package registers them."""

from . import functions, parse  # noqa: F401
from . import batching, dedupe, enrich, fields, rate_limit, window  # noqa: F401
