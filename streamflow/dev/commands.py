"""The CLI commands of local development: ``streamflow dev kafka``, ``streamflow tap``, ``streamflow produce``.

Each is a thin shell: options in, one of `DevKafka`, `Tap`, `Produce` run,
its exit code out. ``--bootstrap`` defaults to ``$KAFKA_BOOTSTRAP`` (the
variable the example pipelines read), else ``127.0.0.1:9092``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import click
from pydantic import ValidationError

from ..core.errors import ConfigError
from ..core.result import EXIT_CONFIG, EXIT_OK, RunResult
from ..observability.logging import redact, setup_logging

__all__ = ["dev", "produce", "tap"]

bootstrap_option = click.option(
    "--bootstrap", "-b", envvar="KAFKA_BOOTSTRAP", show_envvar=True, default="127.0.0.1:9092",
    show_default=True, help="host:port of a Kafka broker (comma-separated for several).")


@click.group()
def dev() -> None:
    """Local services for development."""


@dev.command("kafka")
@click.option("--port", type=click.IntRange(1, 65535), default=9092, show_default=True,
              help="Port of the broker's listener (on 127.0.0.1 only).")
@click.option("--topic", "topics", multiple=True, metavar="NAME[:PARTITIONS]",
              help="Create this topic (default 3 partitions) once the broker is up (repeatable).")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Keep data and logs here (kept on exit); default: a temporary directory, deleted on exit.")
@click.option("--fetch-only", is_flag=True, help="Only fetch the Kafka jars into the cache, then exit.")
def dev_kafka(port: int, topics: tuple[str, ...], workdir: str | None, fetch_only: bool) -> None:
    """Run a local single-node Kafka until Ctrl-C.

    The broker listens on 127.0.0.1 only and stops cleanly on Ctrl-C or SIGTERM.
    Needs Java 17+ and, the first time, Maven (it fetches Apache Kafka's
    jars from Maven Central into ~/.cache/streamflow, about 45 MB). Prints
    the bootstrap address on stdout; topics are also created on first use.
    """
    from .kafka import DevKafka, fetch_jars

    if fetch_only:
        raise SystemExit(fetch_jars())
    raise SystemExit(DevKafka(port=port, topics=topics, workdir=workdir, keep=workdir is not None).run())


@click.command()
@click.argument("topic", required=False)
@click.option("--file", "-f", "path", type=click.Path(dir_okay=False), default=None,
              help="Read this file instead of a topic.")
@bootstrap_option
@click.option("--codec", default="json", show_default=True, help="How values are decoded for printing.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest event (default: only new ones).")
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Print this many events, then stop (waiting for them if need be).")
@click.option("--follow", is_flag=True, help="Keep waiting for new events (default: stop at the end).")
@click.option("--json", "json_lines", is_flag=True, help="One JSON object per event (for scripts).")
def tap(topic: str | None, path: str | None, bootstrap: str, codec: str, from_beginning: bool,
        count: int | None, follow: bool, json_lines: bool) -> None:
    """Print a topic's (or a file's) events, like kcat.

    Each line shows the partition, offset, key, headers and the value decoded
    by --codec.
    Without --count or --follow it stops at the end of the topic; Ctrl-C
    stops it at any time.
    """
    from .tap import Tap

    if (topic is None) == (path is None):
        raise click.UsageError("give a TOPIC or --file PATH (one of them)")
    _quiet_logs()
    _exit(lambda: Tap(topic=topic, file=path, bootstrap=bootstrap, codec=codec, from_beginning=from_beginning,
                      count=count, follow=follow, json_lines=json_lines).run())


@click.command()
@click.argument("topic")
@bootstrap_option
@click.option("--file", "-f", "path", type=click.Path(dir_okay=False), default=None,
              help="Send the lines of this file (default: standard input).")
@click.option("--codec", default="raw", show_default=True,
              help="How lines are parsed: raw sends them as they are; json lets --key-field pick the key.")
@click.option("--key-field", default=None, help="Field of each (JSON) event that becomes its key.")
@click.option("--template", default=None, metavar="FILE|JSON",
              help="Generate events from a generator-source template (a YAML/JSON file or inline JSON).")
@click.option("--count", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="With --template: how many events.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --template: events per second (default: as fast as possible).")
@click.option("--seed", type=int, default=None, help="With --template: the same seed gives the same events.")
def produce(topic: str, bootstrap: str, path: str | None, codec: str, key_field: str | None,
            template: str | None, count: int, rate: float | None, seed: int | None) -> None:
    """Send lines or generated events to a topic.

    Lines come from standard input or --file; --template generates --count
    events instead. Waits until the broker has acknowledged every event.
    """
    from .produce import Produce

    if template is not None and path is not None:
        raise click.UsageError("give --template or --file, not both")
    _quiet_logs()
    _exit(lambda: Produce(topic=topic, bootstrap=bootstrap, file=path, codec=codec, key_field=key_field,
                          template=template, count=count, rate=rate, seed=seed).run(),
          done=lambda r: f"sent {r.events_in} events to {topic} at {bootstrap}")


def _quiet_logs() -> None:
    """Warnings of streamflow only: aiokafka's transient errors (a topic being auto-created, a group
    coordinator still loading on a fresh broker) are noise here; a real failure ends the run."""
    setup_logging("text", "WARNING")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def _exit(run: Callable[[], RunResult], done: Callable[[RunResult], str] | None = None) -> None:
    """Run; print a config error (exit 2), a failure's summary, or ``done``'s line; exit with the run's code."""
    try:
        result = run()
    except (ConfigError, ValidationError) as exc:
        click.echo(redact(str(exc)), err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if result.exit_code != EXIT_OK:
        click.echo(redact(result.summary()), err=True)
    elif done is not None:
        click.echo(done(result), err=True)
    raise SystemExit(result.exit_code)
