#!/usr/bin/env bash
# Build the local stand-in for the apache/kafka image (docker/local/kafka/Dockerfile):
#   docker/local/kafka-image.sh NAME      # PYTHON: an interpreter with streamflow installed
# The jars come from the cache the test suite's broker uses (resolved by Maven on first
# use); Java is installed on the base that base-image.sh makes (podman caches the layer).
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: kafka-image.sh NAME}
lib=$("${PYTHON:-python3}" -c 'from streamflow.dev.kafka import ensure_jars; print(ensure_jars())')
docker/local/base-image.sh localhost/streamflow-base:bookworm
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -r docker/local/kafka/. "$context/"
cp -r "$lib" "$context/lib"
podman build --format docker --pull=never -t "$name" "$context" >"$context.log" 2>&1 \
    || { tail -30 "$context.log"; rm -f "$context.log"; exit 1; }
rm -f "$context.log"
echo "kafka image $name built"
