"""Config errors a newcomer hits, each reported at the right line and field with a fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from streamflow import Pipeline
from streamflow.cli import cli
from streamflow.config import InvalidConfig, load_yaml, loads_yaml
from streamflow.connectors.files_sink import FileSink
from streamflow.core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

SOURCE = "source: {type: generator, count: 3, format: object}\n"


def write(tmp_path: Path, text: str, name: str = "p.yaml", head: str = "") -> Path:
    """``head`` (unindented) then ``text`` dedented, as ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(text).lstrip())
    return path


def errors_of(path: Path, **options: bool) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        load_yaml(path, **options)
    return [str(issue) for issue in info.value.issues]


def test_empty_sinks_is_reported_at_sinks(tmp_path: Path) -> None:
    cfg = write(tmp_path, "name: p\n" + SOURCE + "sinks: []\n")
    assert errors_of(cfg) == [f"{cfg}:3:8: sinks — expected at least one sink"]


def test_two_sinks_with_one_name_are_reported_at_the_second_name(tmp_path: Path) -> None:
    cfg = write(tmp_path, head="name: p\n" + SOURCE, text="""
        sinks:
          - {type: stdout, name: out}
          - {type: memory, name: out}
        """)
    [error] = errors_of(cfg)
    assert error.startswith(f"{cfg}:5:26: sinks[1].name — 'out' is already the name of sinks[0] (a sink)")
    assert "stages" not in error.split("—")[0]
    with pytest.raises(ConfigError, match="two sinks are named 'out'"):
        Pipeline("p").source("memory").sink("memory", name="out").sink("stdout", name="out").validate()


def test_fn_whose_module_raises_on_import_is_reported_at_fn(tmp_path: Path) -> None:
    (tmp_path / "broken_fns.py").write_text("import os\nraise RuntimeError('no config here')\n")
    cfg = write(tmp_path, head="name: p\n" + SOURCE, text="""
        stages:
          - type: map
            fn: broken_fns:double
        sinks: [{type: stdout}]
        """)
    [error] = errors_of(cfg)
    assert error.startswith(f"{cfg}:5:9: stages[0].fn — importing module 'broken_fns' of 'broken_fns:double' "
                            "failed: RuntimeError: no config here (at ")
    assert "broken_fns.py:2)" in error


def test_python_component_with_a_bad_config_names_component_and_field() -> None:
    with pytest.raises(ConfigError) as info:
        FileSink(path=3, rotate={"max_bytes": True})
    assert str(info.value) == ("sink 'file': 2 config errors\n"
                               "  path — Input should be a valid string (got 3)\n"
                               "  rotate.max_bytes — expected a number, got true")
    assert isinstance(info.value, ValidationError)  # still pydantic's, for code that catches it
    with pytest.raises(ConfigError, match=r"^source 'generator': rate — Input should be greater than 0"):
        Pipeline("p").source("generator", rate=0)


def test_python_pipeline_with_a_bad_component_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text("from streamflow import Pipeline\n"
                                      "pipeline = Pipeline('p').source('generator', count=True).sink('stdout')\n")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "pipe.py")])
    assert result.exit_code == 2
    assert "source 'generator': count — expected a number, got true" in result.output


@pytest.mark.parametrize("yaml_key, line, shown", [
    ("source: {type: generator, count: 3, batch_size: true}", 2, "source.batch_size"),
    ("source: {type: generator, count: 3}\nsettings: {channel: {max_batches: true}}", 3,
     "settings.channel.max_batches"),
    ("source: {type: generator, count: 3}\nsettings: {shutdown_timeout: false}", 3, "settings.shutdown_timeout"),
])
def test_a_boolean_is_not_a_number(tmp_path: Path, yaml_key: str, line: int, shown: str) -> None:
    cfg = write(tmp_path, f"name: p\n{yaml_key}\nsinks: [{{type: stdout}}]\n")
    [error] = errors_of(cfg)
    assert error.startswith(f"{cfg}:{line}:") and f"{shown} — expected a number, got " in error


def test_did_you_mean_for_codec_and_function_typos(tmp_path: Path) -> None:
    (tmp_path / "my_fns.py").write_text("def is_purchase(e):\n    return True\n")
    cfg = write(tmp_path, head="name: p\n" + SOURCE, text="""
        stages:
          - {type: parse, codec: jsn}
          - {type: filter, fn: "my_fns:is_purchse"}
        sinks: [{type: stdout}]
        """)
    codec, fn = errors_of(cfg)
    assert codec.startswith(f"{cfg}:4:") and "stages[0].codec — unknown codec type 'jsn' (did you mean 'json'?)" \
        in codec
    assert fn.startswith(f"{cfg}:5:") and \
        "module 'my_fns' has no attribute 'is_purchse' (did you mean 'my_fns:is_purchase'?)" in fn


def test_missing_input_files_are_config_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
        name: p
        source: {type: file, path: nowhere/in.jsonl}
        stages:
          - {type: enrich, table: nowhere/products.csv, key: id}
        sinks: [{type: file, path: out/x.jsonl, mkdir: true}]
        """)
    path_error, table_error = errors_of(cfg, check_files=True)
    assert path_error.startswith(f"{cfg}:2:28: source.path — no such file: ")
    assert table_error.startswith(f"{cfg}:4:27: stages[0].table — no such file: ")
    assert load_yaml(cfg).name == "p"  # without check_files (as `streamflow test` loads)

    validate = CliRunner().invoke(cli, ["validate", str(cfg)])
    assert validate.exit_code == 2 and "source.path — no such file" in validate.output
    assert CliRunner().invoke(cli, ["validate", "--no-check-files", str(cfg)]).exit_code == 0
    run = subprocess.run([sys.executable, "-m", "streamflow.cli", "run", str(cfg)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "source.path — no such file" in run.stderr
    assert not (tmp_path / "out").exists()  # nothing was opened: the file sink made no directory


def test_a_followed_file_may_not_exist_yet(tmp_path: Path) -> None:
    cfg = write(tmp_path, "name: p\nsource: {type: file, path: later.jsonl, mode: follow}\nsinks: [{type: stdout}]\n")
    assert load_yaml(cfg, check_files=True).name == "p"


def test_a_custom_component_by_import_path(tmp_path: Path) -> None:
    (tmp_path / "my_sinks.py").write_text(textwrap.dedent("""
        from pydantic import Field
        from streamflow.api import Batch, ComponentConfig, Sink

        class ListConfig(ComponentConfig):
            prefix: str = Field("", description="prepended")

        SEEN = []

        class ListSink(Sink[ListConfig]):
            async def write(self, batch: Batch) -> None:
                SEEN.extend(self.config.prefix + str(m.value["id"]) for m in batch)

        class NotASink:
            pass
    """))
    cfg = write(tmp_path, """
        name: p
        source: {type: generator, count: 3, format: object, template: {id: {seq: true}}}
        sinks:
          - {type: "my_sinks:ListSink", prefix: "#"}
        """)
    pipeline = load_yaml(cfg)
    assert pipeline.run(handle_signals=False).exit_code == 0
    import my_sinks  # type: ignore[import-not-found]

    assert my_sinks.SEEN == ["#0", "#1", "#2"]
    assert pipeline.sinks[0].sink.name == "my_sinks:ListSink"

    bad = write(tmp_path, "name: p\n" + SOURCE + "sinks:\n  - {type: \"my_sinks:NotASink\"}\n"
                "  - {type: \"my_sinks:ListSink\", prefx: x}\n", name="bad.yaml")
    not_a_sink, typo = errors_of(bad)
    assert not_a_sink.startswith(f"{bad}:4:") and "'my_sinks:NotASink' is not a sink class" in not_a_sink
    assert typo.startswith(f"{bad}:5:") and "sinks[1].prefx — unknown key (did you mean 'prefix'?)" in typo


def test_help_shows_the_whole_docs_line() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "docs      List component types, or the config keys of one." in result.output
    assert "test      Run the config unit tests of pipelines." in result.output


def test_docs_without_kind() -> None:
    enrich = CliRunner().invoke(cli, ["docs", "enrich"])
    assert enrich.exit_code == 0 and enrich.output.startswith("#### transform `enrich`")
    both = CliRunner().invoke(cli, ["docs", "file"]).output
    assert "#### source `file`" in both and "#### sink `file`" in both
    typo = CliRunner().invoke(cli, ["docs", "enrch"])
    assert typo.exit_code == 2 and "(did you mean 'enrich'?)" in typo.output
    sinks = CliRunner().invoke(cli, ["docs", "sink"]).output.splitlines()
    assert sinks and all(line.startswith("sink ") for line in sinks)
    window = CliRunner().invoke(cli, ["docs", "window"]).output
    assert "module docstring" not in window and "Tumbling windows of ``size`` seconds" in window


def test_a_module_not_on_the_import_path_says_where_modules_are_looked_for() -> None:
    with pytest.raises(ConfigError) as info:
        loads_yaml("name: p\nsource: {type: generator, count: 1}\n"
                   "stages:\n  - {type: map, fn: 'nosuchpkg.functions:double'}\nsink: {type: stdout}\n")
    text = str(info.value)
    assert "No module named 'nosuchpkg'" in text
    assert "the working directory" in text and "run from the directory the module path is relative to" in text
