"""The demo pipeline of pipelines/demo.yaml, written with the Python API.

    streamflow run pipelines/demo.py
    python pipelines/demo.py          # the same, from the repository's root
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from streamflow import Pipeline

if __name__ == "__main__":  # `python pipelines/demo.py`: the repository root holds the `pipelines` package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.demo_functions import add_total, is_purchase  # noqa: E402 - after the path fix above

pipeline = (
    Pipeline("demo")
    .source(
        "generator",
        count=int(os.environ.get("DEMO_EVENTS", "200000")),
        batch_size=1000,
        seed=42,
        malformed_every=5000,
        template={
            "id": {"seq": True},
            "type": {"choice": ["view", "view", "view", "purchase", "refund"]},
            "product_id": {"choice": ["p1", "p2", "p3", "p4", "p5"]},
            "quantity": {"int": [1, 9]},
            "user": {"int": [1, 5000]},
        },
    )
    .parse("json", on_error="dead_letter")
    .filter(is_purchase)
    .enrich(table="pipelines/data/products.csv", format="csv", key="product_id",
            fields=["name", "category", "price"])
    .map(add_total)
    .sink("file", path="out/demo.jsonl", codec="json", mkdir=True)
    .dead_letter("file", path="out/demo-dead-letter.jsonl", codec="json", mkdir=True)
)

if __name__ == "__main__":
    raise SystemExit(pipeline.run().exit_code)
