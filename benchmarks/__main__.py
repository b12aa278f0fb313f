"""`python -m benchmarks run …`: throughput and memory of streamflow against bare asyncio loops and peers.

    python -m benchmarks run                          # every workload, 5 rounds, peers included
    python -m benchmarks run --workload file-enrich --rounds 5 --json results.jsonl
    python -m benchmarks run --smoke                  # tiny N, outputs checked, no peers (the pytest smoke test)
    python -m benchmarks run --workload kafka-enrich --broker kfake   # against a broker lighter than a JVM
    python -m benchmarks profile file-enrich          # pyinstrument profile of the streamflow variant

``child`` is the internal entry point of the per-run subprocesses.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .brokers import BROKERS, start_broker
from .harness import (
    RESULT_FILE_ARG,
    Options,
    Workload,
    append_json,
    peak_rss_kib,
    reference_summary,
    run_workload,
    table,
)
from .workloads import WORKLOADS, workload_class


def _run(args: argparse.Namespace) -> int:
    names = args.workload or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}", file=sys.stderr)
        return 2
    opts = Options(n=args.n, rounds=args.rounds, smoke=args.smoke, bootstrap=args.bootstrap, json_path=args.json,
                   peers=not args.no_peers, verbose=args.verbose, only_variants=args.variant,
                   reference=args.reference)
    log = lambda line: print(line, flush=True)  # noqa: E731
    rounds = args.rounds or ("1" if args.smoke else "5 (the default)")
    log(f"streamflow benchmarks: {', '.join(names)}; rounds={rounds}{' (smoke)' if args.smoke else ''}; "
        f"work dir {opts.workdir}")
    rows: list[tuple[type[Workload], list[Any]]] = []
    failed = False
    started = time.monotonic()
    kafka = None
    try:
        for name in names:
            cls = workload_class(name)
            if getattr(cls, "needs_kafka", False) and opts.bootstrap is None:
                kind = args.broker or "kafka"
                kafka = kafka or start_broker(kind, log)
                if kafka is None:
                    needs = "Go" if kind == "kfake" else "Java"
                    rows.append((cls, [_na(cls, opts, v, f"no {kind} broker (pass --bootstrap or install {needs})")
                                       for v in cls(opts).selected_variants()]))
                    continue
                opts.bootstrap = kafka.bootstrap
            log(f"{name}:")
            outcomes = run_workload(cls(opts), log)
            rows.append((cls, outcomes))
            failed |= any(o.status.startswith("FAILED") for o in outcomes)
    finally:
        if kafka is not None:
            kafka.close()
        if not args.keep:
            shutil.rmtree(opts.workdir, ignore_errors=True)
    print()
    print(table(rows))
    for cls, outcomes in rows:
        for line in cls(opts).summary(outcomes) + reference_summary(opts, outcomes):
            print(line)
    print(f"\ntotal {time.monotonic() - started:.0f}s")
    if args.json:
        append_json(args.json, opts, rows)
        print(f"results appended to {args.json}")
    return 1 if failed else 0


def _na(cls: type[Workload], opts: Options, variant: str, reason: str) -> Any:
    from .harness import Outcome

    wl = cls(opts)
    return Outcome(cls.name, variant, wl.n, status=f"n/a: {reason}")


def _child(args: argparse.Namespace) -> int:
    params = json.loads(Path(args.params).read_text())
    params["_result_file"] = args.result  # for variants that must exit the hard way (faust)
    params["workdir"] = str(Path(args.result).parent)
    cls = workload_class(args.workload)
    result = cls.run_variant(args.variant, params)
    result["child_rss_kib"] = peak_rss_kib()
    Path(args.result).write_text(json.dumps(result))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from .profiling import profile

    return profile(args.workload, args.n, args.output, args.bootstrap, args.variant)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run workloads and print the results table")
    run.add_argument("--workload", action="append", metavar="NAME", help=f"one of {', '.join(WORKLOADS)} "
                     "(repeatable; default all)")
    run.add_argument("--variant", action="append", metavar="NAME", help="only these variants (repeatable)")
    run.add_argument("--n", type=int, help="events per run (default: each workload's own)")
    run.add_argument("--rounds", type=int, help="rounds of each variant, alternating (default: the workload's own, "
                     "3 or 2; 1 with --smoke)")
    run.add_argument("--json", metavar="FILE", help="append the results as JSON lines to FILE")
    run.add_argument("--smoke", action="store_true", help="tiny N, no peers: checks that every variant is correct")
    run.add_argument("--bootstrap", help="Kafka bootstrap servers (default: $STREAMFLOW_TEST_BOOTSTRAP, "
                     "else a broker started from tests/kafka/broker.py)")
    run.add_argument("--broker", choices=sorted(BROKERS),
                     help="start this broker (unless --bootstrap is given; it wins over $STREAMFLOW_TEST_BOOTSTRAP): "
                     "kafka (Apache Kafka, a JVM; the default) or kfake (a Kafka-compatible broker in Go, far "
                     "lighter, so the clients' CPU decides)")
    run.add_argument("--no-peers", action="store_true", help="skip the other frameworks")
    run.add_argument("--keep", action="store_true", help="keep the work dir (outputs, child logs)")
    run.add_argument("--reference", metavar="REV", help="also run the streamflow variants of this git revision "
                     "(as VARIANT@REV), alternating with this tree's: compares a change with its reference")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    child = sub.add_parser("child", help=argparse.SUPPRESS)
    child.add_argument("workload")
    child.add_argument("variant")
    child.add_argument("params")
    child.add_argument(RESULT_FILE_ARG, dest="result", required=True)
    child.set_defaults(func=_child)

    prof = sub.add_parser("profile", help="profile the streamflow variant of a workload with pyinstrument")
    prof.add_argument("workload")
    prof.add_argument("--variant", default="streamflow")
    prof.add_argument("--n", type=int)
    prof.add_argument("--bootstrap")
    prof.add_argument("--output", help="also write the HTML profile here")
    prof.set_defaults(func=_profile)

    args = parser.parse_args(argv)
    if getattr(args, "bootstrap", None) is None and args.command in ("run", "profile") \
            and getattr(args, "broker", None) is None:
        import os

        args.bootstrap = os.environ.get("STREAMFLOW_TEST_BOOTSTRAP") or None
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
