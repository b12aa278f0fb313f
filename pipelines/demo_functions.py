"""User functions of the demo pipelines (referenced from YAML as `pipelines.demo_functions:NAME`)."""

from __future__ import annotations

from typing import Any


def is_purchase(event: dict[str, Any]) -> bool:
    """Keep purchases; views and refunds are dropped."""
    return event.get("type") == "purchase"


def add_total(event: dict[str, Any]) -> dict[str, Any]:
    """Price the purchase from the enriched product price."""
    event["total"] = round(float(event["price"]) * event["quantity"], 2)
    return event


def reject_big_orders(event: dict[str, Any]) -> dict[str, Any]:
    """Raise on suspiciously large orders (to show the error policies)."""
    if event["quantity"] >= 9:
        raise ValueError(f"quantity {event['quantity']} needs manual review")
    return event


_calls: dict[Any, int] = {}


def flaky_lookup(event: dict[str, Any]) -> dict[str, Any]:
    """Fail the first attempt for every 10th event, then succeed (to show `retry`)."""
    key = event["id"]
    if key % 10 == 0 and _calls.get(key, 0) == 0:
        _calls[key] = 1
        raise ConnectionError("lookup service timed out")
    return event
