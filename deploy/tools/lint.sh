#!/usr/bin/env bash
# `make lint-deploy`: validate everything under deploy/ plus docker-compose.yml and the Dockerfile,
# offline. Installs the pinned validators first (deploy/tools/install.sh; a no-op when present).
#   1. kafka-topics.yaml is what proto/topics.toml says (deploy/tools/kafka_topics.py --check),
#      and the services' KafkaUsers and prod patches what it and CONSUMERS say (kafka_users.py)
#   2. every overlay renders (kustomize build)
#   3. the rendered objects match the Kubernetes API schemas (kubernetes-validate --strict)
#   4. they follow the best practices kube-score checks, warnings included
#   5. the MongoDBCommunity resource decodes strictly into the operator's API types
#   6. docker-compose.yml loads as Docker Compose loads it (compose-go)
#   7. the Dockerfile passes BuildKit's checks (`docker build --check`) for every service
# Strimzi's Kafka/KafkaNodePool/KafkaTopic have no schema here: tests/unit/test_deploy_manifests.py
# checks their required fields instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/tools/install.sh
BIN=.cache/tools/bin
OUT=.cache/deploy
# The oldest Kubernetes minor still supported upstream when this was written; schemas of newer
# minors accept the same objects (the APIs used here are all GA).
K8S_VERSION=${K8S_VERSION:-1.33.0}
mkdir -p "$OUT"

.venv/bin/python deploy/tools/kafka_topics.py --check
.venv/bin/python deploy/tools/kafka_users.py --check
for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  "$BIN/kustomize" build "$overlay" > "$OUT/$name.yaml"
  .cache/tools/venv/bin/kubernetes-validate --strict --quiet --no-warn -k "$K8S_VERSION" "$OUT/$name.yaml"
  # Optional checks switched on: seccomp and port names. The optional *-requests-equal-limits
  # checks stay off on purpose: CPU limits above requests (Burstable QoS) let a pod burst.
  if ! "$BIN/kube-score" score --output-format ci --exit-one-on-warning \
    --enable-optional-test container-seccomp-profile \
    --enable-optional-test container-ports-check \
    "$OUT/$name.yaml" > "$OUT/$name.kube-score.txt"; then
    grep -E '^\[(WARNING|CRITICAL)\]' "$OUT/$name.kube-score.txt" >&2
    echo "kube-score: overlay $name has findings (above)" >&2
    exit 1
  fi
  "$BIN/deploycheck" mongodb "$OUT/$name.yaml"
  echo "overlay $name: rendered, schema-valid, kube-score clean"
done
"$BIN/deploycheck" compose docker-compose.yml
for pyproject in services/*/pyproject.toml; do
  "$BIN/deploycheck" dockerfile Dockerfile "SERVICE=$(basename "$(dirname "$pyproject")")"
done
