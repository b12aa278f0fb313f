"""Apache Kafka's broker jars: found on Maven Central with Maven once, kept in a cache directory.

Also finds the tools the broker needs (Java 17+, Maven) and fails with the
fix when one is missing.

Environment:

``STREAMFLOW_KAFKA_CACHE``
    Directory in which ``lib/`` (the resolved jars) is kept.  Default:
    ``~/.cache/streamflow/kafka-<version>``.
``STREAMFLOW_KAFKA_VERSION``
    Kafka version to resolve (default :data:`KAFKA_VERSION`).
``STREAMFLOW_MVN``
    The ``mvn`` executable to use (default: ``mvn`` on ``PATH``).
``JAVA_HOME``
    If set, ``$JAVA_HOME/bin/java`` is used, else ``java`` on ``PATH``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .pom import POM

__all__ = ["KAFKA_VERSION", "KafkaHarnessError", "default_cache_dir", "ensure_jars", "find_java",
           "find_mvn", "kafka_version"]

#: Default Apache Kafka version (must exist on Maven Central as
#: ``org.apache.kafka:kafka_2.13``).
KAFKA_VERSION = "4.1.2"

_MARKER = "jars.ok"
_LOCK = ".lock"
_MIN_JAVA = 17


class KafkaHarnessError(RuntimeError):
    """Anything that went wrong while resolving, starting or talking to Kafka."""


# --------------------------------------------------------------------------
# Tool discovery
# --------------------------------------------------------------------------


def kafka_version() -> str:
    """The Kafka version to run: ``$STREAMFLOW_KAFKA_VERSION`` or :data:`KAFKA_VERSION`."""
    return os.environ.get("STREAMFLOW_KAFKA_VERSION") or KAFKA_VERSION


def find_java() -> str:
    """Path of a ``java`` (17+) executable, or a clear :class:`KafkaHarnessError`."""
    candidates = []
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for java in candidates:
        if os.path.isfile(java) and os.access(java, os.X_OK):
            _check_java_version(java)
            return java
    raise KafkaHarnessError(
        "java not found: a local Kafka broker needs a Java 17+ runtime on PATH "
        "(or JAVA_HOME). On Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless; "
        "on macOS: brew install openjdk@17. Or use a broker of your own (KAFKA_BOOTSTRAP, "
        "or STREAMFLOW_TEST_BOOTSTRAP for the tests)."
    )


_java_checked: dict[str, int] = {}


def _check_java_version(java: str) -> None:
    if java in _java_checked:
        return
    try:
        out = subprocess.run(
            [java, "-XshowSettings:properties", "-version"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaHarnessError(f"could not run {java}: {exc}") from exc
    major = 0
    for line in (out.stderr + out.stdout).splitlines():
        line = line.strip()
        if line.startswith("java.specification.version"):
            value = line.split("=", 1)[1].strip()
            try:
                major = int(value.split(".")[1] if value.startswith("1.") else value.split(".")[0])
            except ValueError:
                major = 0
            break
    if major and major < _MIN_JAVA:
        raise KafkaHarnessError(
            f"{java} is Java {major}; Kafka 4.x brokers need Java {_MIN_JAVA}+"
        )
    _java_checked[java] = major


def find_mvn() -> str:
    """Path of the ``mvn`` executable, or a clear :class:`KafkaHarnessError`."""
    mvn = os.environ.get("STREAMFLOW_MVN") or shutil.which("mvn")
    if mvn and (shutil.which(mvn) or os.path.isfile(mvn)):
        return mvn
    raise KafkaHarnessError(
        "mvn (Apache Maven) not found: it is needed once to fetch the Kafka broker "
        "jars from Maven Central. On Debian/Ubuntu: apt-get install -y maven; on macOS: "
        "brew install maven. Or set STREAMFLOW_MVN, or pre-populate STREAMFLOW_KAFKA_CACHE, "
        "or use a broker of your own (KAFKA_BOOTSTRAP)."
    )


# --------------------------------------------------------------------------
# Jar resolution
# --------------------------------------------------------------------------


def default_cache_dir(version: str | None = None) -> Path:
    env = os.environ.get("STREAMFLOW_KAFKA_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streamflow" / f"kafka-{version or kafka_version()}"


def _marker_text(version: str) -> str:
    pom_sha = hashlib.sha256(POM.encode()).hexdigest()
    return f"kafka={version}\npom-sha256={pom_sha}\n"


def _jars_ready(cache_dir: Path, expected: str) -> bool:
    marker = cache_dir / _MARKER
    lib = cache_dir / "lib"
    try:
        return marker.read_text() == expected and any(lib.glob("kafka_2.13-*.jar"))
    except OSError:
        return False


class _FileLock:
    """Exclusive ``flock`` on a file, with a bounded wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> _FileLock:
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    self._fd = None
                    raise KafkaHarnessError(
                        f"timed out after {self.timeout:.0f}s waiting for lock {self.path} "
                        "(another process resolving the Kafka jars?)"
                    ) from None
                time.sleep(0.25)

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def ensure_jars(cache_dir: Path | None = None, *, timeout: float = 1200.0,
                quiet: bool = True) -> Path:
    """Resolve the Kafka broker jars once and return the directory holding them.

    ``cache_dir`` (default :func:`default_cache_dir`, i.e.
    ``$STREAMFLOW_KAFKA_CACHE`` or ``~/.cache/streamflow/kafka-<version>``)
    receives ``lib/`` with every jar, plus a marker file recording the Kafka
    version and the hash of ``pom.xml``; while both match, nothing is done.
    Concurrent callers (several pytest-xdist workers, say) serialise on a
    file lock, and jars are copied to a temporary directory that is renamed
    into place only when complete, so a half-resolved ``lib/`` is never used.

    Returns ``cache_dir / "lib"``, to be used as the classpath ``lib/*``.
    """
    version = kafka_version()
    find_java()  # no JVM, no broker: say so before fetching anything
    cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(version)
    lib = cache_dir / "lib"
    expected = _marker_text(version)
    if _jars_ready(cache_dir, expected):
        return lib

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _FileLock(cache_dir / _LOCK, timeout=timeout):
        if _jars_ready(cache_dir, expected):  # someone else did it meanwhile
            return lib
        find_java()  # fail early and clearly if there is no usable JVM (the first thing to install)
        started = time.monotonic()
        staging = _resolve_with_maven(cache_dir, version, timeout, quiet)
        (cache_dir / _MARKER).unlink(missing_ok=True)
        if lib.exists():
            shutil.rmtree(lib)
        staging.chmod(0o755)
        staging.rename(lib)
        (cache_dir / _MARKER).write_text(expected)
        if not quiet:
            print(f"resolved Kafka {version} jars into {lib} in "
                  f"{time.monotonic() - started:.1f}s", file=sys.stderr)
    return lib


def _resolve_with_maven(cache_dir: Path, version: str, timeout: float, quiet: bool) -> Path:
    """Copy the broker's runtime jars into a new staging directory of ``cache_dir`` with Maven."""
    mvn = find_mvn()
    staging = Path(tempfile.mkdtemp(prefix="lib.partial-", dir=cache_dir))
    pom = cache_dir / "pom.xml"
    pom.write_text(POM)
    cmd = [
        mvn, "-B", "-f", str(pom),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    if quiet:
        cmd.insert(1, "-q")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KafkaHarnessError(f"mvn timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise KafkaHarnessError(
            f"resolving Kafka {version} jars with Maven failed (exit {proc.returncode}):\n"
            f"  {' '.join(cmd)}\n{tail}"
        )
    return staging

