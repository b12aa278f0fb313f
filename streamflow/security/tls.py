"""`ServerTls`: the TLS (and optional mutual TLS) settings of a server streamflow runs.

Both servers use it — the HTTP source (``type: http``, key ``tls``) and the
operations server (``settings.http.tls``) — so a webhook and its ``/metrics``
are protected the same way. With ``client_cafile`` set, a client must present
a certificate signed by that CA (mutual TLS); without a valid one the
handshake fails before any HTTP is read.
"""

from __future__ import annotations

import ssl
from typing import Literal

from pydantic import Field, SecretStr

from ..core.configs import ConfigModel

TlsVersion = Literal["TLSv1.2", "TLSv1.3"]


class ServerTls(ConfigModel):
    """Certificate, key and client verification of a TLS server."""

    certfile: str = Field(description="server certificate chain (PEM)")
    keyfile: str | None = Field(None, description="private key of `certfile` (PEM), if not inside it")
    password: SecretStr | None = Field(None, description="password of the private key (never logged)")
    client_cafile: str | None = Field(None, description="CA bundle (PEM) client certificates must be signed "
                                                        "by: set, it turns on mutual TLS")
    min_version: TlsVersion = Field("TLSv1.2", description="oldest TLS version accepted")

    def context(self) -> ssl.SSLContext:
        """The server-side `ssl.SSLContext` (reads the files; a bad file is a `ValueError` naming it)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion[self.min_version.replace(".", "_")]
        password = self.password.get_secret_value() if self.password is not None else None
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile, password)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load TLS certificate {self.certfile}"
                             f"{f' / key {self.keyfile}' if self.keyfile else ''}: {exc}") from None
        if self.client_cafile is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load client CA {self.client_cafile}: {exc}") from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
