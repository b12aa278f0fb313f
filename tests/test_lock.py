"""The lock files match `pyproject.toml`: every dependency pinned within its range, every pin hashed."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """Package -> (pinned version, number of hashes) of a `uv pip compile --generate-hashes` file."""
    found: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        if (m := PIN.match(line)) is not None:
            current = canonicalize_name(m.group(1))
            found[current] = (m.group(2), 0)
        elif current is not None and "--hash=sha256:" in line:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    if extra is not None:
        names += project["optional-dependencies"][extra]
    return [Requirement(r) for r in names]


@pytest.mark.parametrize("lock, extra", [("runtime.txt", None), ("test.txt", "test")])
def test_lock_pins_every_dependency_within_its_range_with_hashes(lock: str, extra: str | None) -> None:
    locked = pins(ROOT / "requirements" / lock)
    assert locked, f"no pins in requirements/{lock}"
    for req in declared(extra):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in requirements/{lock}"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), \
            f"requirements/{lock} pins {req.name}=={version}, outside pyproject.toml's {req.specifier}"
    unhashed = [n for n, (_, hashes) in locked.items() if hashes == 0]
    assert not unhashed, f"pins without hashes in requirements/{lock}: {unhashed}"


def test_runtime_and_test_locks_agree() -> None:
    runtime, test = pins(ROOT / "requirements/runtime.txt"), pins(ROOT / "requirements/test.txt")
    assert {n: v for n, (v, _) in runtime.items()} == {n: test[n][0] for n in runtime}
