"""Built-in connectors. Importing this package registers them."""

from . import memory  # noqa: F401
