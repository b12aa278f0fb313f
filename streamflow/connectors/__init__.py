"""Built-in connectors. Importing this package registers them."""

from . import memory  # noqa: F401
from . import http_source  # noqa: F401
from . import http_sink  # noqa: F401
from . import files_sink, files_source, generator, stdio  # noqa: F401
from . import kafka  # noqa: F401
