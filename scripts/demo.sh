#!/usr/bin/env bash
# `make demo`: the quickstart end to end on local services.
# Starts ZooKeeper and Kafka, creates the topic "devices", produces the sample
# device events in examples/quickstart.records, runs zkflow on
# examples/quickstart.ini until it has caught up, and prints the znode tree.
# ZK_PORT and KAFKA_PORT move the services (scripts/services.sh); the
# quickstart config takes them from the environment too.
set -euo pipefail
cd "$(dirname "$0")/.."

export ZK_PORT=${ZK_PORT:-2181} KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA=127.0.0.1:$KAFKA_PORT
ZK=127.0.0.1:$ZK_PORT

scripts/services.sh start
scripts/services.sh topic devices 3

# Start from an empty subtree so the result shows exactly this run's effect.
build/zktree --delete "$ZK" /zkflow-demo

echo "== producing $(wc -l <examples/quickstart.records) device events to topic 'devices'"
kcat -P -b "$KAFKA" -t devices -K $'\t' -z none -l examples/quickstart.records

echo "== build/zkflow run -c examples/quickstart.ini --exit-on-eof"
build/zkflow run -c examples/quickstart.ini --exit-on-eof

echo "== the resulting tree (build/zktree $ZK /zkflow-demo)"
build/zktree "$ZK" /zkflow-demo
