"""Protobuf message classes for the tests, built from a descriptor in code (as protoc's output would be).

The file ``orders.proto`` (package ``shop``) holds ``Order`` (with a nested
``Line``) and ``Refund``: ``Refund``'s message-index path is ``[1]`` and
``Order.Line``'s is ``[0, 0]``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="orders.proto", package="shop", syntax="proto3")
    order = proto.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    order.field.add(name="qty", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    order.field.add(name="lines", number=3, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                    type_name=".shop.Order.Line")
    line = order.nested_type.add(name="Line")
    line.field.add(name="sku", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    refund = proto.message_type.add(name="Refund")
    refund.field.add(name="order_id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    refund.field.add(name="cents", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    return proto


_pool = descriptor_pool.DescriptorPool()
_descriptor = _pool.Add(_file())
Order: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("shop.Order"))
Line: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("shop.Order.Line"))
Refund: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName("shop.Refund"))
