"""`streamflow dev kafka`, `produce` and `tap`, run as commands (against the suite's real broker),
and the Kafka stumbles a newcomer hits first: no broker, a failing pipeline, the demo run as a script."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from streamflow.dev.kafka import free_port, parse_topic

ROOT = Path(__file__).resolve().parent.parent


def streamflow(*args: str, stdin: bytes | None = None, timeout: float = 120, cwd: Path = ROOT,
               **env: str) -> subprocess.CompletedProcess[str]:
    """``streamflow ARGS`` in a subprocess (bounded in time), its output as text."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.run([sys.executable, "-m", "streamflow.cli", *args], input=stdin, cwd=cwd,
                          env=full_env, capture_output=True, timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


# -- dev kafka: what it says when it cannot start ------------------------------------------------

def test_topic_specs() -> None:
    assert parse_topic("orders") == ("orders", 3) and parse_topic("orders:1") == ("orders", 1)
    for bad in ("", ":3", "orders:x", "orders:0"):
        with pytest.raises(ValueError, match="NAME:PARTITIONS"):
            parse_topic(bad)


def test_dev_kafka_without_java_says_how_to_install_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    proc = subprocess.run([sys.executable, "-m", "streamflow.cli", "dev", "kafka", "--port", str(free_port())],
                          env={**env, "PATH": str(tmp_path), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "java not found" in proc.stderr and "openjdk-17" in proc.stderr


def test_dev_kafka_without_maven_says_how_to_install_it(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java here: the missing-java message comes first")
    env = {k: v for k, v in os.environ.items() if k != "STREAMFLOW_MVN"}
    proc = streamflow("dev", "kafka", "--port", str(free_port()), PATH=str(Path(java).resolve().parent),
                      STREAMFLOW_KAFKA_CACHE=str(tmp_path / "empty-cache"),
                      **{k: v for k, v in env.items() if k == "JAVA_HOME"})
    assert proc.returncode == 1
    assert "mvn (Apache Maven) not found" in proc.stderr and "apt-get install -y maven" in proc.stderr


def test_dev_kafka_on_a_busy_port_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = streamflow("dev", "kafka", "--port", str(port))
    assert proc.returncode == 1 and f"127.0.0.1:{port} is in use" in proc.stderr and "--port" in proc.stderr


# -- produce and tap against the real broker ---------------------------------------------------------

@pytest.mark.kafka
async def test_produce_lines_then_tap_them_with_key_partition_offset(kafka, tmp_path: Path) -> None:
    topic = await kafka.topic("lines", partitions=2)
    events = [{"id": i, "user": f"u{i % 3}"} for i in range(12)]
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    sent = streamflow("produce", topic, "--file", str(src), "--codec", "json", "--key-field", "user",
                      KAFKA_BOOTSTRAP=kafka.bootstrap)
    assert sent.returncode == 0, sent.stderr
    assert f"sent 12 events to {topic}" in sent.stderr

    tapped = streamflow("tap", topic, "--from-beginning", "--json", KAFKA_BOOTSTRAP=kafka.bootstrap)
    assert tapped.returncode == 0, tapped.stderr
    records = [orjson.loads(line) for line in tapped.stdout.splitlines()]
    assert sorted(r["value"]["id"] for r in records) == list(range(12))           # stopped at the end
    for r in records:
        assert r["topic"] == topic and r["key"] == r["value"]["user"] and r["partition"] in (0, 1)
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r["partition"], []).append(r["offset"])
    assert all(offsets == list(range(len(offsets))) for offsets in by_partition.values())
    users = {r["key"]: r["partition"] for r in records}                          # one key, one partition
    assert all(users[r["key"]] == r["partition"] for r in records)


@pytest.mark.kafka
async def test_produce_a_template_then_tap_a_count_in_the_human_format(kafka, tmp_path: Path) -> None:
    topic = await kafka.topic("generated", partitions=1)
    template = '{"n": {"seq": 100}, "kind": "demo"}'
    sent = streamflow("produce", topic, "--template", template, "--count", "7", "-b", kafka.bootstrap)
    assert sent.returncode == 0, sent.stderr
    tapped = streamflow("tap", topic, "--from-beginning", "--count", "3", "-b", kafka.bootstrap)
    assert tapped.returncode == 0, tapped.stderr
    assert tapped.stdout.splitlines() == [f'{topic}[0]@{i}  {{"n":{100 + i},"kind":"demo"}}' for i in range(3)]
    everything = streamflow("tap", topic, "--from-beginning", "-b", kafka.bootstrap)
    assert len(everything.stdout.splitlines()) == 7


@pytest.mark.kafka
async def test_tap_waits_for_a_topic_created_after_it_started(kafka) -> None:
    topic = f"later-{os.urandom(5).hex()}"  # created by the produce below (auto-create), not before
    tap = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamflow.cli", "tap", topic, "--from-beginning", "--count", "2",
        "--codec", "text", "-b", kafka.bootstrap, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(3)  # let the tap subscribe first (the test holds either way)
        sent = await asyncio.to_thread(streamflow, "produce", topic, stdin=b"a\nb\n", KAFKA_BOOTSTRAP=kafka.bootstrap)
        assert sent.returncode == 0, sent.stderr
        out, err = await asyncio.wait_for(tap.communicate(), 90)  # well under aiokafka's 5-minute metadata age
    finally:
        if tap.returncode is None:
            tap.kill()
            await tap.wait()
    assert tap.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert sorted(line.split("  ")[-1] for line in lines) == ["a", "b"] and lines[0].startswith(f"{topic}[")


@pytest.mark.kafka
async def test_tap_shows_undecodable_values_instead_of_failing(kafka) -> None:
    topic = await kafka.topic("mixed", partitions=1)
    sent = streamflow("produce", topic, stdin=b'{"a": 1}\nnot json\n[1,2]\n', KAFKA_BOOTSTRAP=kafka.bootstrap)
    assert sent.returncode == 0, sent.stderr
    tapped = streamflow("tap", topic, "--from-beginning", KAFKA_BOOTSTRAP=kafka.bootstrap)
    lines = tapped.stdout.splitlines()
    assert tapped.returncode == 0 and len(lines) == 3
    assert lines[0].endswith('{"a":1}') and "<not json:" in lines[1] and lines[2].endswith("[1,2]")


def test_tap_a_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"a":1}\n{"a":2}\n{"a":3}\n')
    tapped = streamflow("tap", "--file", str(path), "--count", "2")
    assert tapped.returncode == 0, tapped.stderr
    assert [line.split("  ")[-1] for line in tapped.stdout.splitlines()] == ['{"a":1}', '{"a":2}']
    assert streamflow("tap").returncode == 2                                    # neither a topic nor a file


def test_produce_rejects_a_template_that_is_no_mapping(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("- just\n- a list\n")
    proc = streamflow("produce", "t", "--template", str(tmp_path / "t.yaml"), "-b", "127.0.0.1:1")
    assert proc.returncode == 2 and "expected a mapping" in proc.stderr


# -- no broker: one clear error with the fix -----------------------------------------------------------

def test_no_broker_gives_a_hint_and_no_doubled_error_names() -> None:
    port = free_port()
    proc = streamflow("tap", "orders", "-b", f"127.0.0.1:{port}")
    assert proc.returncode == 1
    assert f"Is a broker running at 127.0.0.1:{port}? Start one with `streamflow dev kafka`" in proc.stderr
    assert "KAFKA_BOOTSTRAP" in proc.stderr
    assert "KafkaConnectionError: KafkaConnectionError" not in proc.stderr
    assert f"cannot connect to 127.0.0.1:{port} yet (KafkaConnectionError: Unable" in proc.stderr


# -- a failing Kafka pipeline: no stray task errors ----------------------------------------------------

@pytest.mark.kafka
async def test_a_failing_kafka_pipeline_leaves_no_stray_read_task(kafka, tmp_path: Path) -> None:
    topic = await kafka.topic("fails", partitions=1)
    await kafka.produce(topic, [{"key": "k", "partition": 0, "value": {"n": i}} for i in range(3)])
    (tmp_path / "boom.py").write_text("def boom(event):\n    raise RuntimeError('boom')\n")
    (tmp_path / "fails.yaml").write_text(textwrap.dedent(f"""\
        name: fails
        source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}], group_id: g-{topic}}}
        stages:
          - {{type: map, fn: "boom:boom"}}
        sinks:
          - {{type: stdout}}
        """))
    proc = streamflow("run", "--quiet", "fails.yaml", cwd=tmp_path, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    assert proc.returncode == 1 and "boom" in proc.stderr
    assert "Task exception was never retrieved" not in proc.stderr, proc.stderr
    assert "getmany" not in proc.stderr, proc.stderr


# -- the demo, run as its docstring says -----------------------------------------------------------------

def test_python_pipelines_demo_py_runs(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    only_streamflow = tmp_path / "site"  # streamflow importable, the repository's `pipelines` not
    only_streamflow.mkdir()
    (only_streamflow / "streamflow").symlink_to(ROOT / "streamflow")
    proc = subprocess.run([sys.executable, "pipelines/demo.py"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(only_streamflow), "DEMO_EVENTS": "5000"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = [orjson.loads(line) for line in (tmp_path / "out/demo.jsonl").read_text().splitlines()]
    assert out and all(e["type"] == "purchase" and "total" in e for e in out)
    assert len((tmp_path / "out/demo-dead-letter.jsonl").read_text().splitlines()) == 1   # malformed_every 5000
