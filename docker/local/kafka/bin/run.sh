#!/bin/sh
# The broker, configured as the apache/kafka image is: every KAFKA_* variable is a
# server.properties entry (KAFKA_NODE_ID -> node.id; `__` -> `_`, `___` -> `-`),
# CLUSTER_ID formats the storage once.
set -eu
props=/opt/kafka/config/server.properties
env | while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS) ;;
        KAFKA_*) key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed 's/___/-/g; s/__/@/g; s/_/./g; s/@/_/g')
                 printf '%s=%s\n' "$key" "$value" ;;
    esac
done > "$props"
/opt/kafka/bin/kafka-run-class.sh kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID:?}" \
    --config "$props" --ignore-formatted
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m}"
exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.net.preferIPv4Stack=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
