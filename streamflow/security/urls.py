"""URLs made fit to show: no credentials, no query string, no fragment.

A query string often carries an API key (``?api_key=…``) and the userinfo
part a password; neither may reach a log line, an error message or a
dead-letter record. `safe_url` is what streamflow prints instead of a URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """``url`` without user:password, query and fragment (``?…`` when a query was removed)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return shown + ("?…" if parts.query else "")


def scrub(text: str, url: str) -> str:
    """``text`` with every occurrence of ``url`` (and of its query string) replaced by `safe_url`."""
    text = text.replace(url, safe_url(url))
    query = urlsplit(url).query
    return text.replace(query, "…") if query else text
