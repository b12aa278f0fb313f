"""Kafka source and sink (aiokafka), sharing one connection/security config."""

from .security import KafkaConnection
from .sink import KafkaSink, KafkaSinkConfig
from .source import KafkaSource, KafkaSourceConfig

__all__ = ["KafkaConnection", "KafkaSink", "KafkaSinkConfig", "KafkaSource", "KafkaSourceConfig"]
