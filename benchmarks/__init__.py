"""streamflow benchmarks: throughput and memory against a bare asyncio loop and other Python frameworks.

Run ``python -m benchmarks run --help``; see benchmarks/README.md.
"""
