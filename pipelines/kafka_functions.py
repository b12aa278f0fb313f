"""User functions of pipelines/kafka_enrich.yaml (referenced as `pipelines.kafka_functions:NAME`)."""

from __future__ import annotations

from typing import Any


def is_order(event: dict[str, Any]) -> bool:
    """Keep orders; page views and other event types are dropped."""
    return event.get("type") == "order"


def price_order(event: dict[str, Any]) -> dict[str, Any]:
    """Add the order total from the enriched unit price; raises on an unknown product or bad quantity."""
    if "price" not in event:
        raise LookupError(f"unknown product {event.get('product_id')!r}")
    quantity = event["quantity"]
    if not isinstance(quantity, int) or quantity <= 0:
        raise ValueError(f"invalid quantity {quantity!r}")
    event["total"] = round(float(event["price"]) * quantity, 2)
    return event
