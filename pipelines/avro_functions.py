"""User functions of pipelines/avro_orders.yaml (referenced as `pipelines.avro_functions:NAME`)."""

from __future__ import annotations

from typing import Any


def total(order: dict[str, Any]) -> dict[str, Any]:
    """The order's total (and whether it is a large one), in the shape of schemas/order_total.avsc."""
    amount = round(order["unit_price"] * order["quantity"], 2)
    return {"order_id": order["order_id"], "customer": order["customer"], "quantity": order["quantity"],
            "total": amount, "large": amount >= 100}
