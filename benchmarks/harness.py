"""The harness: runs each variant in a fresh subprocess, alternating, verifies outputs, reports.

A `Workload` knows how to prepare its input (in the parent, once), what each
run of a variant needs (`params`: fresh output file, topic, consumer group),
how to run a variant (`run_variant`, in the child) and how to check what a
run produced (`verify`, in the parent). The harness runs the variants
A B C A B C ... for ``rounds`` rounds, each in its own interpreter, so peak
RSS is per run (taken from ``wait4``'s rusage of that child).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

#: Printed by a child before its JSON result (the result also goes to a file).
RESULT_FILE_ARG = "--result"


@dataclass
class Options:
    """What `python -m benchmarks run` was asked for."""

    n: int | None = None
    #: None: each workload's `default_rounds` (1 with ``smoke``).
    rounds: int | None = None
    smoke: bool = False
    bootstrap: str | None = None
    json_path: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sf-bench-")))
    python: str = sys.executable
    peers: bool = True
    verbose: bool = False
    only_variants: list[str] | None = None
    #: A git revision whose streamflow runs as extra variants (``streamflow@REV``), alternating with
    #: this tree's, so a change is compared with its reference in one run.
    reference: str | None = None
    #: Where `reference`'s tree was extracted (set by `extract_reference`).
    reference_dir: Path | None = None


@dataclass
class Run:
    """One run of one variant."""

    events: int
    seconds: float
    rss_kib: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_rate(self) -> float:
        """Events per CPU-second of the timed section (less sensitive to a busy machine)."""
        cpu = self.extra.get("cpu") or 0.0
        return self.events / cpu if cpu > 0 else 0.0


@dataclass
class Outcome:
    """All runs of one variant of one workload."""

    workload: str
    variant: str
    n: int
    runs: list[Run] = field(default_factory=list)
    status: str = "ok"  # ok | n/a: reason | FAILED: reason
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(r.rate for r in self.runs) if self.runs else 0.0

    @property
    def cpu_median(self) -> float:
        return statistics.median(r.cpu_rate for r in self.runs) if self.runs else 0.0

    @property
    def peak_rss_mib(self) -> float:
        return max((r.rss_kib for r in self.runs), default=0) / 1024

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "variant": self.variant, "n": self.n, "status": self.status,
            "median_events_per_s": round(self.median, 1),
            "samples": [{"events": r.events, "seconds": round(r.seconds, 4), "events_per_s": round(r.rate, 1),
                         "peak_rss_kib": r.rss_kib, **r.extra} for r in self.runs],
            "notes": self.notes,
        }


class Workload:
    """A benchmark: one input, several variants that must produce the same output."""

    name: ClassVar[str]
    #: Variants in run order; the first ones in ``baselines`` are the bare loops.
    variants: ClassVar[tuple[str, ...]]
    #: Variants that are other frameworks (skipped with ``--smoke`` or ``--no-peers``).
    peers: ClassVar[frozenset[str]] = frozenset()
    #: Variants run only when named with ``--variant`` (experiments, e.g. ``streamflow-b5000-ch8``).
    extras: ClassVar[frozenset[str]] = frozenset()
    #: Variants that run streamflow (``--reference`` runs these of the reference tree too);
    #: None: those whose name starts with "streamflow".
    streamflow_variants: ClassVar[frozenset[str] | None] = None
    #: Variants the ratio column compares against (the best of them).
    baselines: ClassVar[tuple[str, ...]] = ("bare",)
    default_n: ClassVar[int]
    smoke_n: ClassVar[int] = 2000
    #: Rounds when ``--rounds`` is not given (the full run must stay within ~15 minutes).
    default_rounds: ClassVar[int] = 5
    #: Seconds one run may take before it is killed.
    timeout: ClassVar[float] = 600.0

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.n = opts.n or (self.smoke_n if opts.smoke else self.default_n)
        self.rounds = opts.rounds or (1 if opts.smoke else self.default_rounds)

    # -- parent side ------------------------------------------------------
    def selected_variants(self) -> list[str]:
        only = self.opts.only_variants
        out = [v for v in self.variants if not (v in self.peers and (self.opts.smoke or not self.opts.peers))]
        if only:
            return [v for v in out if v in only]
        return [v for v in out if v not in self.extras]

    def prepare(self) -> None:
        """Generate inputs (once per invocation; may use a cache)."""

    def runs_streamflow(self, variant: str) -> bool:
        """Whether ``variant`` runs streamflow itself (not a bare loop or another framework)."""
        if self.streamflow_variants is not None:
            return variant in self.streamflow_variants
        return variant.startswith("streamflow") and variant not in self.peers

    def unavailable(self, variant: str) -> str | None:
        """Why ``variant`` cannot run here (missing package …), or None."""
        return None

    def params(self, variant: str, round_no: int) -> dict[str, Any]:
        """JSON-able parameters of one run (fresh output paths, topics, groups)."""
        return {"n": self.n}

    def verify(self, variant: str, params: dict[str, Any], result: dict[str, Any]) -> str | None:
        """Check what the run produced; the error, or None when correct. May adjust ``result``."""
        return None

    def cleanup_run(self, params: dict[str, Any]) -> None:
        """Remove what one run left behind (output files)."""

    def close(self) -> None:
        """Release what `prepare` set up."""

    def summary(self, outcomes: list[Outcome]) -> list[str]:
        """Lines printed below the table: targets met or not, extra measurements."""
        return []

    # -- child side -------------------------------------------------------
    @classmethod
    def run_variant(cls, variant: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run ``variant`` in this (child) process; returns at least ``events`` and ``seconds``."""
        raise NotImplementedError


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM of /proc/self/status, else ru_maxrss.

    VmHWM belongs to the process's own address space, so unlike ru_maxrss (which
    Linux carries over from the parent at fork/exec) it is the run's own peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Stopwatch:
    """Wall and CPU time (all threads of this process) of a timed section."""

    def __init__(self) -> None:
        self.seconds = self.cpu = 0.0
        self._t0 = self._c0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._c0

    def result(self, events: int, **extra: Any) -> dict[str, Any]:
        """What a variant returns: events, wall seconds, CPU seconds, anything else."""
        return {"events": events, "seconds": self.seconds, "cpu": round(self.cpu, 3), **extra}


def tune_like_streamflow() -> None:
    """Give a bare loop the process tuning streamflow's runner applies (streamflow/core/tuning.py).

    glibc heap trim threshold 32 MiB and GC first-generation threshold 100,000:
    without them bare loops and pipelines alike run ~1.5-2x slower, and the
    ratio to bare should measure the engine, not these settings
    (``STREAMFLOW_TUNING=0`` turns them off for both). The settings are
    streamflow's own, so the two cannot drift apart.
    """
    from streamflow.core import tuning

    tuning.tune_allocator()
    tuning.tune_gc()  # for the rest of this (child) process


def module_available(name: str) -> str | None:
    """None when ``name`` imports, else a short reason."""
    import importlib.util

    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"{name} not installed (pip install -e '.[bench]')"


# -- running children -----------------------------------------------------------------
def extract_reference(opts: Options) -> None:
    """Extract the tree of ``opts.reference`` (a git revision) into the work dir for its variants."""
    if opts.reference is None or opts.reference_dir is not None:
        return
    root = Path(__file__).resolve().parent.parent
    target = opts.workdir / "reference"
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", opts.reference], cwd=root,
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    opts.reference_dir = target


def reference_variant(opts: Options, variant: str) -> tuple[str, Path | None]:
    """``streamflow@REV`` -> (``streamflow``, the reference tree); other names -> (name, None)."""
    if opts.reference is not None and variant.endswith(f"@{opts.reference}"):
        return variant[: -len(opts.reference) - 1], opts.reference_dir
    return variant, None


def run_child(opts: Options, workload: str, variant: str, params: dict[str, Any],
              timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run one variant in a fresh interpreter: (result or None, log tail).

    The result carries ``child_rss_kib`` (the child's own peak RSS) and
    ``cpu_seconds`` (user + system time of the child, from ``wait4``). A
    ``streamflow…@REV`` variant runs the code (streamflow and its workload) of
    the reference tree.
    """
    variant, reference_root = reference_variant(opts, variant)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=opts.workdir))
    params_file, result_file, log_file = run_dir / "params.json", run_dir / "result.json", run_dir / "log.txt"
    params_file.write_text(json.dumps(params))
    cmd = [opts.python, "-m", "benchmarks", "child", workload, variant, str(params_file),
           RESULT_FILE_ARG, str(result_file)]
    env = dict(os.environ)
    root = str(reference_root or Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        status, rusage = _wait(proc, deadline)
    tail = _tail(log_file)
    if status is None:
        return None, f"timed out after {timeout:.0f}s\n{tail}"
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not result_file.exists():
        return None, f"exit code {code}\n{tail}"
    result = json.loads(result_file.read_text())
    result["cpu_seconds"] = round(rusage.ru_utime + rusage.ru_stime, 3)
    return result, tail


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, Any]:
    """wait4 the child (its rusage has its own peak RSS); kill it past ``deadline``."""
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, rusage
        if time.monotonic() > deadline:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            _, _, rusage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, rusage
        time.sleep(0.02)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_workload(wl: Workload, log: Callable[[str], None]) -> list[Outcome]:
    """All rounds of every selected variant of ``wl``, alternating."""
    variants = wl.selected_variants()
    if wl.opts.reference is not None:
        extract_reference(wl.opts)
        variants += [f"{v}@{wl.opts.reference}" for v in variants if wl.runs_streamflow(v)]
    outcomes = {v: Outcome(wl.name, v, wl.n) for v in variants}
    runnable = []
    for v in variants:
        reason = wl.unavailable(reference_variant(wl.opts, v)[0])
        if reason:
            outcomes[v].status = f"n/a: {reason}"
            log(f"  {wl.name}/{v}: skipped ({reason})")
        else:
            runnable.append(v)
    if not runnable:
        return list(outcomes.values())
    log(f"  preparing {wl.name} (n={wl.n:,})")
    wl.prepare()
    try:
        for r in range(wl.rounds):
            for v in runnable:
                out = outcomes[v]
                if out.status != "ok":
                    continue
                base = reference_variant(wl.opts, v)[0]
                params = wl.params(base, r)
                result, tail = run_child(wl.opts, wl.name, v, params, wl.timeout)
                if result is None:
                    out.status = f"FAILED: {tail.splitlines()[0] if tail else 'no output'}"
                    log(f"  {wl.name}/{v} round {r + 1}: FAILED\n{_indent(tail)}")
                    wl.cleanup_run(params)
                    continue
                error = wl.verify(base, params, result)
                wl.cleanup_run(params)
                if error is not None and result.get("unsupported"):
                    out.status = f"n/a: {result['unsupported']}"
                    log(f"  {wl.name}/{v}: n/a ({result['unsupported']})")
                    continue
                if error is not None:
                    out.status = f"FAILED: wrong output: {error}"
                    log(f"  {wl.name}/{v} round {r + 1}: WRONG OUTPUT: {error}")
                    if wl.opts.verbose:
                        log(_indent(tail))
                    continue
                extra = {k: v2 for k, v2 in result.items()
                         if k not in ("events", "seconds", "child_rss_kib") and _jsonable(v2)}
                rss = int(result.get("child_rss_kib", 0))
                run = Run(int(result["events"]), float(result["seconds"]), rss, extra)
                out.runs.append(run)
                out.n = run.events
                log(f"  {wl.name}/{v} round {r + 1}: {run.rate:,.0f} events/s, {run.seconds:.2f}s, "
                    f"cpu {result.get('cpu', 0):.2f}s (process {result['cpu_seconds']:.2f}s), peak RSS {rss / 1024:.0f} MiB" + (f"  {result['note']}" if result.get("note") else ""))
    finally:
        wl.close()
    return list(outcomes.values())


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


# -- reporting --------------------------------------------------------------------------
def reference_summary(opts: Options, outcomes: list[Outcome]) -> list[str]:
    """With ``--reference``: each streamflow variant against the same variant of the reference."""
    if opts.reference is None:
        return []
    by = {o.variant: o for o in outcomes if o.ok}
    lines = []
    for name, ref in by.items():
        base, root = reference_variant(opts, name)
        this = by.get(base)
        if root is None or this is None or not ref.median:
            continue
        cpu = (f"; events per CPU-second {this.cpu_median / ref.cpu_median:.2f}x"
               if ref.cpu_median else "")
        lines.append(f"{this.workload}/{base}: this tree / {opts.reference} = "
                     f"{this.median / ref.median:.2f}x events/s{cpu}")
    return lines


def baseline_rate(wl: type[Workload], outcomes: list[Outcome]) -> float:
    rates = [o.median for o in outcomes if o.variant in wl.baselines and o.ok]
    return max(rates, default=0.0)


def baseline_cpu_rate(wl: type[Workload], outcomes: list[Outcome]) -> float:
    """Events per CPU-second of the bare loop with the best events/s (the same loop `baseline_rate` takes)."""
    best = max((o for o in outcomes if o.variant in wl.baselines and o.ok), key=lambda o: o.median, default=None)
    return best.cpu_median if best is not None else 0.0


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f}–{max(values):,.0f}"


def table(rows: list[tuple[type[Workload], list[Outcome]]]) -> str:
    """The results table (plain text, aligned): medians over the rounds, their range, and both ratios
    to the best bare loop."""
    header = ("workload", "variant", "n", "median ev/s", "min–max ev/s", "× bare", "ev/cpu-s", "min–max ev/cpu-s",
              "× bare cpu", "peak RSS MiB", "status")
    lines: list[tuple[str, ...]] = [header]
    for wl, outcomes in rows:
        base, base_cpu = baseline_rate(wl, outcomes), baseline_cpu_rate(wl, outcomes)
        for o in outcomes:
            if o.ok:
                ratio = f"{o.median / base:.2f}" if base else "-"
                cpus = [r.cpu_rate for r in o.runs]
                cpu = f"{o.cpu_median:,.0f}" if o.cpu_median else "-"
                cpu_ratio = f"{o.cpu_median / base_cpu:.2f}" if base_cpu and o.cpu_median else "-"
                lines.append((wl.name, o.variant, f"{o.n:,}", f"{o.median:,.0f}", _spread([r.rate for r in o.runs]),
                              ratio, cpu, _spread(cpus) if o.cpu_median else "-", cpu_ratio,
                              f"{o.peak_rss_mib:,.0f}", "ok" if o.status == "ok" else o.status))
            else:
                lines.append((wl.name, o.variant, f"{o.n:,}", "-", "-", "-", "-", "-", "-", "-", o.status))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {2, 3, 4, 5, 6, 7, 8, 9}
    out = []
    for k, line in enumerate(lines):
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(line)]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "platform": platform.platform(), "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_kib"] = int(line.split()[1])
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("streamflow", "uvloop", "orjson", "aiokafka", "aiofiles", "quixstreams", "faust-streaming",
                "bytewax", "confluent-kafka"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    info["packages"] = versions
    return info


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    sha = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def append_json(path: str, opts: Options, rows: list[tuple[type[Workload], list[Outcome]]]) -> None:
    """One JSON line per workload variant, with the commit, the machine and every sample."""
    common = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(), "machine": machine_info(),
              "smoke": opts.smoke}
    with open(path, "a", encoding="utf-8") as f:
        for wl, outcomes in rows:
            base = baseline_rate(wl, outcomes)
            for o in outcomes:
                rec = {**common, "rounds": len(o.runs), **o.to_json(), "ratio_to_bare": round(o.median / base, 3) if base and o.ok else None,
                       "peak_rss_mib": round(o.peak_rss_mib, 1)}
                f.write(json.dumps(rec) + "\n")
