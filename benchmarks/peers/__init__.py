"""The kafka-enrich job written with other Python stream frameworks (installed by the ``bench`` extra).

Each module has ``run(params) -> dict`` with the same contract as the bare
and streamflow variants: ``events`` consumed, ``seconds``, ``t_first`` (wall
clock of the first consumed message) and, where the framework commits to the
consumer group, committed offsets at the end of the input.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Variant name -> module in this package.
PEERS = {"quixstreams": "quix", "quixstreams-eos": "quix", "faust": "faust_app", "bytewax": "bytewax_flow"}


def run_peer(variant: str, params: dict[str, Any]) -> dict[str, Any]:
    from ..harness import tune_like_streamflow

    tune_like_streamflow()  # the same allocator/GC settings as streamflow and the bare loops
    module = importlib.import_module(f"{__package__}.{PEERS[variant]}")
    return module.run(params)
