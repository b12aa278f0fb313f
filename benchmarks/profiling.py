"""`python -m benchmarks profile WORKLOAD`: a pyinstrument profile of one variant (default streamflow).

The variant runs in this process (inputs prepared as for a benchmark run)
under pyinstrument, sampling every 1 ms with async frames shown where they
ran, then the call tree is printed (and written as HTML with ``--output``).
For a whole-process view without the profiler's overhead use py-spy, also
in the ``bench`` extra::

    py-spy record --gil -r 1000 -o profile.svg -- python -m benchmarks child ...
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .harness import Options
from .workloads import workload_class


def profile(workload: str, n: int | None, output: str | None, bootstrap: str | None,
            variant: str = "streamflow") -> int:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install -e '.[bench]'")
        return 2
    cls = workload_class(workload)
    workdir = Path(tempfile.mkdtemp(prefix="sf-profile-"))
    opts = Options(n=n, rounds=1, bootstrap=bootstrap, workdir=workdir)
    if getattr(cls, "needs_kafka", False) and not bootstrap:
        print("this workload needs --bootstrap (or STREAMFLOW_TEST_BOOTSTRAP)")
        return 2
    wl = cls(opts)
    wl.prepare()
    params = wl.params(variant, 0)
    params["_result_file"] = str(workdir / "result.json")
    params["workdir"] = str(workdir)
    profiler = Profiler(interval=0.001, async_mode="disabled")
    try:
        profiler.start()
        try:
            result = cls.run_variant(variant, params)
        finally:
            profiler.stop()
        error = wl.verify(variant, params, result)
        print(f"{workload}/{variant}: {result['events']:,} events in {result['seconds']:.2f}s"
              + (f" — WRONG OUTPUT: {error}" if error else " (output verified)"))
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        if output:
            Path(output).write_text(profiler.output_html())
            print(f"HTML profile written to {output}")
    finally:
        wl.cleanup_run(params)
        wl.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
