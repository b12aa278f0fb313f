"""The image of docker/Dockerfile, built and run with podman, for the container tests.

`image()` builds it once per session: from a base made locally by
docker/local/base-image.sh (no registry is needed) unless
``STREAMFLOW_TEST_BASE_IMAGE`` names one, with podman settings from
docker/local/containers.conf (``CONTAINERS_CONF``). Without podman (or
debootstrap for the base) the tests are skipped, unless
``STREAMFLOW_TEST_CONTAINERS=1`` (CI) makes that a failure.
`Container` is one `podman run -d`, removed by `Containers.remove_all()`.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
IMAGE = "localhost/streamflow:test"
BASE = "localhost/streamflow-base:bookworm"
REQUIRED = os.environ.get("STREAMFLOW_TEST_CONTAINERS") == "1"


def podman_env() -> dict[str, str]:
    """The environment every podman command gets: the project's containers.conf unless one is set."""
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(DOCKER / "local/containers.conf"))}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS`; on failure (with ``check``) the error says what podman printed."""
    r = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


def _missing_tools() -> list[str]:
    need = ["podman"] + ([] if os.environ.get("STREAMFLOW_TEST_BASE_IMAGE") else ["debootstrap"])
    return [tool for tool in need if shutil.which(tool) is None]


@functools.cache
def _build() -> tuple[str, float]:
    base = os.environ.get("STREAMFLOW_TEST_BASE_IMAGE")
    started = time.monotonic()
    if not base:
        base = BASE
        r = subprocess.run([str(DOCKER / "local/base-image.sh"), base], env=podman_env(),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"base image: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    podman("build", "--format", "docker", "--pull=never", "--build-arg", f"PYTHON_IMAGE={base}",
           "-f", str(DOCKER / "Dockerfile"), "-t", IMAGE, str(ROOT), timeout=900)
    seconds = time.monotonic() - started
    print(f"\n[containers] image {IMAGE} built in {seconds:.1f}s (base {base})")
    return IMAGE, seconds


@functools.cache
def _build_kafka() -> str:
    name = os.environ.get("STREAMFLOW_TEST_KAFKA_IMAGE", "")
    if not name:
        name = "localhost/streamflow-kafka:test"
        r = subprocess.run([str(DOCKER / "local/kafka-image.sh"), name], env={**podman_env(), "PYTHON": sys.executable},
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"kafka image: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return name


def kafka_image() -> str:
    """A Kafka broker image for docker/compose.yaml: ``$STREAMFLOW_TEST_KAFKA_IMAGE`` (apache/kafka
    where a registry is reachable), else the local stand-in of docker/local/kafka/ (built once)."""
    image()  # the same tools, and the same skip
    return _build_kafka()


def image() -> str:
    """The streamflow image, built from docker/Dockerfile (once per session); skips without podman."""
    missing = _missing_tools()
    if missing:
        message = f"{', '.join(missing)} not installed (docker/local/setup.sh installs it)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return _build()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, error) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def deployment_container() -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, streamflow container) of docker/k8s/deployment.yaml."""
    docs = list(YAML(typ="safe").load_all((DOCKER / "k8s/deployment.yaml").read_text()))
    [pod] = [d["spec"]["template"]["spec"] for d in docs if d and d["kind"] == "Deployment"]
    [container] = [c for c in pod["containers"] if c["name"] == "streamflow"]
    return pod, container


def hardening_flags() -> list[str]:
    """`podman run` options that run the image as docker/k8s/deployment.yaml runs it.

    The container tests use these, so the Deployment's runtime settings are the
    ones exercised: uid/gid, read-only root, a writable emptyDir per mount
    (tmpfs here), dropped capabilities, no privilege escalation.
    """
    pod, container = deployment_container()
    sec = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    flags = ["--user", f"{sec['runAsUser']}:{sec['runAsGroup']}"]
    if sec.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    flags += [a for m in container.get("volumeMounts", []) if m["name"] in empty_dirs
              for a in ("--tmpfs", m["mountPath"])]
    flags += [a for cap in sec.get("capabilities", {}).get("drop", []) for a in ("--cap-drop", cap)]
    if sec.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    return flags


class Container:
    """One detached container: its name, the host port of its operations server, and podman verbs."""

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port = name, port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until /readyz answers 200; fails with the container's log otherwise."""
        deadline = time.monotonic() + timeout
        while http_get(self.url("/readyz"))[0] != 200:
            if time.monotonic() > deadline or not self.running():
                raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.logs()[-3000:]}")
            time.sleep(0.2)

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def stop(self, grace: int = 45) -> tuple[int, float]:
        """`podman stop` (SIGTERM, SIGKILL after ``grace`` s): (exit code, seconds it took)."""
        started = time.monotonic()
        podman("stop", "-t", str(grace), self.name, timeout=grace + 30)
        return int(self.inspect("{{.State.ExitCode}}")), time.monotonic() - started

    def logs(self) -> str:
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (the image logs JSON) of the container."""
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


class Containers:
    """Containers a test started; `remove_all` removes them, running or not."""

    def __init__(self) -> None:
        self.made: list[Container] = []
        self.tag = uuid.uuid4().hex[:8]

    def run(self, name: str, *args: str, network_host: bool = False, port: int | None = None) -> Container:
        """`podman run -d` of the image, hardened as docker/k8s/deployment.yaml runs it (`hardening_flags`).

        ``args``: further `podman run` options, then ``--`` and the command's arguments.
        With ``network_host`` the operations server listens on 127.0.0.1:``port`` of the host;
        otherwise the image's own :8080 is published on 127.0.0.1:``port``.
        """
        port = port or free_port()
        full = f"sf-{self.tag}-{name}"
        net = (["--network", "host", "-e", "STREAMFLOW_HTTP_HOST=127.0.0.1", "-e", f"STREAMFLOW_HTTP_PORT={port}"]
               if network_host else ["-p", f"127.0.0.1:{port}:8080"])
        cut = args.index("--") if "--" in args else len(args)
        opts, cmd = args[:cut], args[cut + 1:]
        podman("run", "-d", "--name", full, "--health-interval", "disable", *hardening_flags(),
               *net, *opts, image(), *cmd)
        container = Container(full, port)
        self.made.append(container)
        return container

    def remove_all(self) -> None:
        for c in self.made:
            podman("rm", "-f", "-t", "0", c.name, check=False)
