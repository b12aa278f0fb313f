"""Built-in transforms. Importing this package registers them."""

from . import functions, parse  # noqa: F401
