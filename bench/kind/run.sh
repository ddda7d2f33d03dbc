#!/usr/bin/env bash
# The kind bench: karch as it runs in a cluster. Creates a kind cluster, loads the karch image,
# deploys single-replica Kafka, Redis and MinIO (infra.yaml) and the kind overlay, produces
# RECORDS records of RECORD_SIZE bytes with Kafka's own producer, triggers the CronJob once the
# last 5-minute window has closed, waits, and prints the coordinator's table (records, MB,
# ratio, seconds per window) with the wall time.
#
# Needs a running container engine (docker), kind and kubectl. It cannot run on a machine
# without them (our CI machines): there, make test only dry-runs these manifests against a
# real API server.
set -euo pipefail
: "${KIND_CLUSTER:=karch-bench}" "${RECORDS:=2000000}" "${RECORD_SIZE:=400}"
root=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "bench/kind: $*" >&2; exit 1; }
for c in docker kind kubectl; do command -v "$c" >/dev/null || die "needs $c on PATH"; done
docker info >/dev/null 2>&1 || die "needs a running container engine (docker info fails)"
k() { kubectl --context "kind-$KIND_CLUSTER" -n karch "$@"; }

kind get clusters | grep -qx "$KIND_CLUSTER" || kind create cluster --name "$KIND_CLUSTER"
make -C "$root" image # the Dockerfile's image, as an OCI archive
kind load image-archive "$root/bin/karch-image.tar" --name "$KIND_CLUSTER"
kubectl --context "kind-$KIND_CLUSTER" apply -k "$root/deploy/overlays/kind"
k apply -f "$root/bench/kind/infra.yaml"
k rollout status deploy/kafka deploy/redis deploy/minio --timeout=5m
k wait --for=condition=complete job/minio-bucket --timeout=5m
k exec deploy/kafka -- /opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 \
  --create --if-not-exists --topic cdr --partitions 8

start=$(date -u +%s)
start=$((start - start % 300))
k exec deploy/kafka -- /opt/kafka/bin/kafka-producer-perf-test.sh --topic cdr --num-records "$RECORDS" \
  --record-size "$RECORD_SIZE" --throughput -1 --producer-props bootstrap.servers=localhost:9092 acks=all
k patch configmap karch-pipeline --type merge -p "{\"data\": {\"KARCH_WINDOW\": \"5m\", \"KARCH_LATENESS\": \"0s\",
  \"KARCH_MAX_WINDOWS\": \"24\", \"KARCH_START\": \"$(date -u -d "@$start" +%Y-%m-%dT%H:%M:%SZ)\"}}"
now=$(date -u +%s)
echo "bench/kind: waiting $((300 - now % 300))s for the last window to close" >&2
sleep $((300 - now % 300 + 1))

run="bench-$(date +%s)"
t0=$(date +%s.%N)
k create job --from=cronjob/karch-cdr "$run"
k wait --for=condition=complete "job/$run" --timeout=60m
t1=$(date +%s.%N)
k logs "job/$run" | grep -v '^{' # the results table; JSON log lines go to stderr in the pod
echo "wall seconds (job created to complete): $(echo "$t1 - $t0" | bc)"
