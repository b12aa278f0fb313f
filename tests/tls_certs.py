"""Certificates made for a test: a CA, a server certificate for 127.0.0.1/localhost, a client certificate.

Generated with the ``openssl`` command line into a temporary directory, so
the TLS tests use real certificates and a real handshake, never a mock.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certs:
    """PEM files: ``ca`` signs ``server`` (SAN 127.0.0.1, localhost) and ``client``."""

    ca: Path
    ca_key: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path

    def client_context(self, with_cert: bool = True) -> ssl.SSLContext:
        """A client context trusting the CA, presenting the client certificate if ``with_cert``."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if with_cert:
            ctx.load_cert_chain(str(self.client), str(self.client_key))
        return ctx


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, subject: str, ext: str) -> None:
    """A key and a certificate for ``subject`` signed by the CA in ``d``."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


def make_certs(d: Path) -> Certs:
    """Generate the CA, server and client certificates into ``d``."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command line is needed to generate test certificates (apt-get install openssl)")
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=streamflow test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _issue(d, "server", "/CN=localhost",
           "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _issue(d, "client", "/CN=test client", "extendedKeyUsage=clientAuth\n")
    return Certs(d / "ca.pem", d / "ca.key", d / "server.pem", d / "server.key", d / "client.pem",
                 d / "client.key")

