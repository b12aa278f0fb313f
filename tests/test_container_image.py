"""The image of docker/Dockerfile, built and run with podman, checked from outside the container.

Run hardened as docker/k8s/deployment.yaml runs it (read-only root, uid 10001,
all capabilities dropped, a writable /tmp): version, a pipeline from a mounted
config, /healthz /readyz /metrics on the image's :8080, the image's own
HEALTHCHECK, and `podman stop` draining to exit 0 with nothing lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from podman_harness import Containers, http_get, image, podman

import streamflow

pytestmark = pytest.mark.timeout(900)  # the first test may build the image

MAX_IMAGE_MB = 300  # python slim (~130 MB) + the virtualenv (~65 MB); build tools would blow it


@pytest.fixture
def containers() -> Iterator[Containers]:
    made = Containers()
    yield made
    made.remove_all()


def test_image_is_small_non_root_with_healthcheck_and_no_pip() -> None:
    name = image()
    [config] = json.loads(podman("image", "inspect", name).stdout)
    size_mb = config["Size"] / 1e6
    print(f"\n[containers] image size {size_mb:.0f} MB")
    assert size_mb < MAX_IMAGE_MB
    assert config["Config"]["User"] == "10001:10001"
    assert config["Config"]["Entrypoint"] == ["streamflow", "run"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])  # kept by the docker format
    assert config["Config"]["StopSignal"] == "SIGTERM"
    version = podman("run", "--rm", "--entrypoint", "streamflow", name, "--version")
    assert version.stdout.strip() == f"streamflow {streamflow.__version__}"
    no_pip = podman("run", "--rm", "--entrypoint", "python", name, "-m", "pip", "--version", check=False)
    assert no_pip.returncode != 0 and "No module named pip" in no_pip.stderr


def test_mounted_pipeline_serves_probes_passes_healthcheck_and_drains_on_stop(
        containers: Containers, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the container's uid 10001 writes here
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("""
name: in-a-container
settings: {shutdown_timeout: 20}
source: {type: generator, rate: 2000, batch_size: 50, format: object, template: {id: {seq: true}}}
sinks: [{type: file, path: /out/events.jsonl}]
""")
    c = containers.run("one", "-v", f"{pipeline}:/etc/streamflow/pipeline.yaml:ro", "-v", f"{out}:/out")
    c.wait_ready()
    status, body = http_get(c.url("/healthz"))
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, metrics = http_get(c.url("/metrics"))
    assert status == 200 and 'streamflow_up{pipeline="in-a-container"} 1.0' in metrics
    assert podman("healthcheck", "run", c.name, check=False).returncode == 0
    assert c.inspect("{{.State.Health.Status}}") == "healthy"
    time.sleep(0.5)  # let some batches through before the stop
    code, seconds = c.stop(grace=45)
    print(f"\n[containers] podman stop: exit {code} after {seconds:.1f}s")
    assert code == 0, c.logs()[-3000:]
    assert seconds < 45  # drained by itself, not SIGKILLed at the end of the grace period
    [summary] = [line for line in c.log_lines() if line.get("message", "").startswith("stopped:")]
    assert summary["exit_code"] == 0 and summary["errors"] == 0
    ids = [json.loads(line)["id"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert ids and ids == list(range(len(ids)))  # every event the source read was written, in order
    assert summary["events_out"] == len(ids)
