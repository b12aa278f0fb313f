"""The README's component reference is generated from the config models and kept in sync."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamflow.config.reference import describe, list_types, reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- reference:begin -->", "<!-- reference:end -->"


def test_readme_component_reference_is_current() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text
    current = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert current == reference_markdown().strip(), (
        "README component reference is stale: regenerate it with "
        "`python -m streamflow.config.reference --write README.md`")


def test_every_registered_type_is_listed_and_described() -> None:
    listing = list_types()
    for kind, name in [("source", "file"), ("source", "kafka"), ("transform", "enrich"),
                       ("sink", "http"), ("codec", "json"), ("codec", "text"), ("framing", "newline"),
                       ("framing", "length_delimited")]:
        assert f"{kind:<10} {name:<12}" in listing
    text = describe("sink", "file")
    assert "| `path` | str | **required** |" in text
    assert "| `codec` | str | `json` |" in text and "| `framing` | str | `newline` |" in text
    assert "4 bytes, big-endian" in describe("framing", "length_delimited")


def test_reference_documents_both_registries() -> None:
    text = reference_markdown()
    codecs = text.split("### Codecs", 1)[1].split("### Framings", 1)[0]
    framings = text.split("### Framings", 1)[1]
    for name in ("json", "text", "raw", "csv"):
        assert f"| `{name}` |" in codecs
    for name in ("newline", "length_delimited", "whole"):
        assert f"| `{name}` |" in framings


def test_docs_command() -> None:
    out = subprocess.run([sys.executable, "-m", "streamflow.cli", "docs", "transform", "filter"],
                         capture_output=True, text=True, check=True).stdout
    assert "transform `filter`" in out and "`fn`" in out
    bad = subprocess.run([sys.executable, "-m", "streamflow.cli", "docs", "sink", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown sink type 'nope'" in bad.stderr
