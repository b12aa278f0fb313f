"""The ``streamflow`` command: a thin shell over `streamflow.load` and `Pipeline.run`.

    streamflow run pipeline.yaml --set source.count=10
    streamflow validate pipeline.yaml
    streamflow graph pipelines/orders.py:pipeline

Exit codes: 0 completed or drained, 1 the pipeline failed, 2 config error,
130 aborted by a second signal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import click

from . import __version__
from .core.errors import ConfigError
from .core.pipeline import Pipeline
from .core.result import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, RunResult
from .core.settings import HttpSettings
from .loading import load
from .observability.logging import FORMATS, log_config_error, redact, setup_logging

log = logging.getLogger("streamflow.cli")

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Watcher = Callable[[Any], Awaitable[None]]

pipeline_argument = click.argument("target", metavar="PIPELINE")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a value of a YAML pipeline, e.g. --set source.count=10 (repeatable).")


def _load(target: str, overrides: tuple[str, ...], check_files: bool = False,
          log_format: str = "text") -> Pipeline:
    """Load and validate, or report the config errors on stderr (JSON log lines in JSON mode) and exit 2."""
    try:
        return load(target, overrides, check_files=check_files)
    except ConfigError as exc:
        _config_error(exc, log_format)


def _config_error(exc: ConfigError, log_format: str) -> NoReturn:
    """Report config errors on stderr (JSON log lines in JSON mode) and exit 2."""
    if log_format == "json":
        log_config_error(exc)
    else:
        click.echo(redact(str(exc)), err=True)
    raise SystemExit(EXIT_CONFIG) from None


def _workers(value: str) -> int:
    """``--workers``: a positive integer or ``auto``."""
    from .workers import resolve_workers

    try:
        return resolve_workers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="streamflow", message="%(prog)s %(version)s")
def cli() -> None:
    """Run streaming pipelines defined in YAML or Python."""
    # like `python -m`: modules in the current directory can be named as 'module:function'
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


@cli.command()
@pipeline_argument
@set_option
@click.option("--quiet", "-q", is_flag=True, help="No live progress, and no summary on success.")
@click.option("--log-format", type=click.Choice(FORMATS), envvar="STREAMFLOW_LOG_FORMAT", show_envvar=True,
              default="text", show_default=True, help="Human-readable text, or one JSON object per line.")
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), envvar="STREAMFLOW_LOG_LEVEL",
              show_envvar=True, default=None, help="Default: INFO (WARNING with --quiet).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None, envvar="STREAMFLOW_HTTP_PORT",
              show_envvar=True,
              help="Serve /metrics, /healthz and /readyz on this port (overrides settings.http.port).")
@click.option("--http-host", default=None, envvar="STREAMFLOW_HTTP_HOST", show_envvar=True,
              help="Address the HTTP server binds (default 127.0.0.1; 0.0.0.0 in a container).")
@click.option("--workers", default="1", envvar="STREAMFLOW_WORKERS", show_envvar=True, show_default=True,
              metavar="N|auto", callback=lambda ctx, param, value: _workers(value),
              help="Run N processes of the pipeline (auto: one per core), each a member of its Kafka "
                   "consumer group, under one supervisor serving /metrics, /healthz and /readyz for all.")
def run(target: str, overrides: tuple[str, ...], quiet: bool, log_format: str, log_level: str | None,
        http_port: int | None, http_host: str | None, workers: int) -> None:
    """Run PIPELINE until its sources end or it is stopped.

    PIPELINE is a YAML file, a Python file (file.py or file.py:attr) or
    module:attr. Exit code 0: completed or drained after SIGTERM/SIGINT;
    1: the pipeline failed; 2: config error; 130: aborted by a second signal.
    """
    setup_logging(log_format, log_level or ("WARNING" if quiet else "INFO"))
    pipeline = _load(target, overrides, check_files=True, log_format=log_format)
    if http_port is not None or http_host is not None:
        http = pipeline.settings.http or HttpSettings()
        update = {k: v for k, v in (("port", http_port), ("host", http_host)) if v is not None}
        pipeline.settings = pipeline.settings.model_copy(update={"http": http.model_copy(update=update)})
    if workers > 1:  # -- streamflow run --workers N (streamflow/workers/) --
        from .workers import run_workers

        try:
            code = run_workers(target, overrides, workers=workers, pipeline=pipeline, log_format=log_format,
                               log_level=log_level or ("WARNING" if quiet else "INFO"))
        except ConfigError as exc:
            _config_error(exc, log_format)
        raise SystemExit(code)
    watchers = _http_watchers(pipeline)
    if not quiet and log_format == "text" and sys.stderr.isatty():
        from .observability.progress import progress

        watchers.append(progress)
    result: RunResult = pipeline.run(watchers=watchers)
    _report(result, quiet, log_format)
    raise SystemExit(result.exit_code)


def _http_watchers(pipeline: Pipeline) -> list[Watcher]:
    """A watcher serving the operations endpoints when ``settings.http`` is set."""
    http = pipeline.settings.http
    if http is None:
        return []
    from .observability.server import serve

    host, port, tls = http.host, http.port, http.tls
    return [lambda runner: serve(runner, host, port, tls=tls)]


def _report(result: RunResult, quiet: bool, log_format: str) -> None:
    """The one-line summary on stderr (a JSON log line in JSON mode); on success nothing if quiet."""
    if quiet and result.exit_code == EXIT_OK:
        return
    # a failure the runner caught is already logged with its reason: the summary gives the counts
    summary = redact(result.summary(reason=not (result.exit_code == EXIT_FAILED and result.error is not None)))
    if log_format == "json":
        level = logging.INFO if result.exit_code == EXIT_OK else logging.ERROR
        log.log(level, summary, extra={"exit_code": result.exit_code, "events_in": result.events_in,
                                       "events_out": result.events_out, "errors": result.errors,
                                       "dead_lettered": result.dead_lettered,
                                       "elapsed": round(result.elapsed, 3)})
    else:
        click.echo(summary, err=True)


@cli.command()
@pipeline_argument
@set_option
@click.option("--no-check-files", "skip_files", is_flag=True,
              help="Do not check that input files (file source path, enrich table) exist.")
def validate(target: str, overrides: tuple[str, ...], skip_files: bool) -> None:
    """Check PIPELINE without running it.

    Prints "ok: NAME (N stages)", or every error found and exits 2. Input
    files that do not exist are errors too, unless --no-check-files.
    """
    pipeline = _load(target, overrides, check_files=not skip_files)
    click.echo(f"ok: {pipeline.name} ({len(pipeline.stages())} stages)")


@cli.command()
@pipeline_argument
@set_option
def graph(target: str, overrides: tuple[str, ...]) -> None:
    """Print PIPELINE's graph as a Mermaid flowchart."""
    click.echo(redact(_load(target, overrides).graph()), nl=False)


@cli.command(short_help="List component types, or the config keys of one.")
@click.argument("kind", metavar="[KIND]", required=False)
@click.argument("type_name", metavar="[TYPE]", required=False)
def docs(kind: str | None, type_name: str | None) -> None:
    """List the component types, or the config keys of one.

    KIND is source, transform, sink, codec or framing and may be left out:
    `docs sink file`, `docs enrich`, `docs sink`.
    """
    from .config.reference import REGISTRIES, describe, describe_any, list_types

    try:
        if kind is None:
            text = list_types()
        elif type_name is not None:
            if kind not in REGISTRIES:
                raise KeyError(f"unknown KIND {kind!r}; expected one of: {', '.join(REGISTRIES)}")
            text = describe(kind, type_name)
        else:
            text = list_types(kind) if kind in REGISTRIES else describe_any(kind)
    except KeyError as exc:
        click.echo(str(exc).strip('"'), err=True)
        raise SystemExit(EXIT_CONFIG) from None
    click.echo(text)


# -- streamflow test ------------------------------------------------------------------
@cli.command("test", short_help="Run the config unit tests of pipelines.")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option("--verbose", "-v", is_flag=True, help="Show the pipelines' log lines.")
def test_command(paths: tuple[str, ...], verbose: bool) -> None:
    """Run the config unit tests of pipelines: NAME.test.yaml files and `tests:` keys.

    PATH is a test file, a pipeline file with a `tests:` key, or a directory
    (every test file under it). Exit code 0: every case passed; 1: a case
    failed (with a diff); 2: a test file, or the pipeline it tests, is broken.
    """
    from .testing import run_tests

    setup_logging("text", "INFO" if verbose else "CRITICAL")
    report = run_tests(paths, echo=click.echo)
    click.echo(report.summary())
    raise SystemExit(report.exit_code)
# -- end of streamflow test -----------------------------------------------------------


# -- local development: a dev broker, and events into and out of topics (streamflow/dev/) --
from .dev.commands import dev, produce, tap  # noqa: E402 - registered here, defined there

cli.add_command(dev)
cli.add_command(tap)
cli.add_command(produce)
# -- end of local development commands --


def main() -> None:
    """Entry point of the ``streamflow`` script."""
    cli(prog_name="streamflow")


if __name__ == "__main__":
    main()
