"""HMAC-SHA256 request signatures, the way GitHub, Slack and most webhook senders sign.

The sender computes ``HMAC-SHA256(secret, signed)`` over the raw body —
``signed`` is the body, or with a timestamp header a template such as
``{timestamp}.{body}`` (Slack: ``v0:{timestamp}:{body}``) — and sends it hex
encoded in a header, optionally behind a prefix (GitHub: ``sha256=``). A
timestamp older or newer than ``tolerance`` seconds is refused, and so is a
signature already seen within that window: a captured request cannot be
replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Mapping

from pydantic import Field, SecretStr, model_validator

from ..core.configs import ConfigModel


class SignatureConfig(ConfigModel):
    """How requests are signed (HMAC-SHA256)."""

    secret: SecretStr = Field(description="shared HMAC key (use ${ENV_VAR}; never logged)")
    header: str = Field("X-Signature-256", description="request header holding the signature "
                                                       "(GitHub: X-Hub-Signature-256)")
    prefix: str = Field("sha256=", description="text before the hex digest in the header (Slack: v0=)")
    #: Replay protection: a timestamp signed with the body, and how far it may be from now.
    timestamp_header: str | None = Field(default=None, description=(
        "request header holding the Unix time the request was signed at; set, it is signed too and "
        "checked against `tolerance`"))
    template: str | None = Field(default=None, description=(
        "what is signed, `{body}` last: default `{body}`, or `{timestamp}.{body}` with `timestamp_header` "
        "(Slack: `v0:{timestamp}:{body}`)"))
    tolerance: float = Field(300.0, gt=0, description="seconds a signed timestamp may differ from now")

    @model_validator(mode="after")
    def _check(self) -> SignatureConfig:
        if self.template is None:
            self.template = "{timestamp}.{body}" if self.timestamp_header else "{body}"
        if not self.template.endswith("{body}") or self.template.count("{body}") != 1:
            raise ValueError("signature template must end with {body} (and hold it once)")
        if ("{timestamp}" in self.template) != (self.timestamp_header is not None):
            raise ValueError("`{timestamp}` in the template and `timestamp_header` go together")
        return self


class BadSignature(ValueError):
    """The request's signature is missing, wrong, stale or replayed (answered 401)."""


class Verifier:
    """Checks request signatures under one `SignatureConfig`, remembering recent ones against replays."""

    def __init__(self, config: SignatureConfig, max_remembered: int = 100_000) -> None:
        self.config = config
        self._key = config.secret.get_secret_value().encode()
        self._seen: OrderedDict[str, float] = OrderedDict()  # signature -> when it stops mattering
        self._max = max_remembered

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
        """Return if ``body`` is signed right and fresh; raise `BadSignature` saying why not."""
        cfg = self.config
        given = headers.get(cfg.header)
        if given is None or not given.startswith(cfg.prefix):
            raise BadSignature(f"missing or malformed {cfg.header} header")
        now = time.time() if now is None else now
        head = b""
        if cfg.timestamp_header is not None:
            stamp = headers.get(cfg.timestamp_header, "")
            try:
                when = float(stamp)
            except ValueError:
                raise BadSignature(f"missing or malformed {cfg.timestamp_header} header") from None
            if abs(now - when) > cfg.tolerance:
                raise BadSignature(f"signature timestamp is more than {cfg.tolerance:g}s from now")
            assert cfg.template is not None
            head = cfg.template[:-len("{body}")].replace("{timestamp}", stamp).encode()
        expected = hmac.new(self._key, head + body, hashlib.sha256).hexdigest()
        digest = given[len(cfg.prefix):].strip().lower()
        if not hmac.compare_digest(digest.encode(), expected.encode()):
            raise BadSignature("signature does not match the body")
        if cfg.timestamp_header is not None:
            self._remember(digest, now)

    def _remember(self, digest: str, now: float) -> None:
        """Refuse a signature seen within the tolerance window (a replay), else remember it."""
        while self._seen and next(iter(self._seen.values())) < now:
            self._seen.popitem(last=False)
        if digest in self._seen:
            raise BadSignature("signature already used (replay)")
        self._seen[digest] = now + 2 * self.config.tolerance
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)


def sign(secret: str, body: bytes, timestamp: str | None = None, template: str = "{body}",
         prefix: str = "sha256=") -> str:
    """The header value a sender would send (for tests and clients)."""
    head = template[:-len("{body}")].replace("{timestamp}", timestamp or "").encode()
    return prefix + hmac.new(secret.encode(), head + body, hashlib.sha256).hexdigest()
