"""HTTP source (``type: http``): a webhook you can expose.

Each POST becomes one batch and is answered 200 only once acknowledged
downstream. Hardening: TLS and mutual TLS, a bearer token and/or HMAC-SHA256
signatures with replay protection, a per-client rate limit, a connection
cap, header and body deadlines, 415 for unsupported content types, a rule
for non-object JSON, and a byte budget on the bodies held at once.

* `config` — `HttpSourceConfig` and its nested settings
* `body` — Content-Type → framing, JSON decoding, the non-object rule
* `limits` — `ByteBudget` and the per-client `RateLimiter`
* `connections` — `ConnectionGuard`: connection cap, header deadline
* `source` — `HttpSource`, the request path from head to acknowledgement
"""

from .body import ACCEPTED_TYPES, BadBody, NotAnObject, UnsupportedType, parse_body
from .config import HttpSourceConfig, RateLimit
from .source import HttpSource

__all__ = ["ACCEPTED_TYPES", "BadBody", "HttpSource", "HttpSourceConfig", "NotAnObject", "RateLimit",
           "UnsupportedType", "parse_body"]
