#!/usr/bin/env bash
# The node bench: bench/kind's workload on the local node that `make kube-up` starts (a real
# kubelet, containerd and runc beside the local control plane; see docs/testing.md, "The local node"),
# with karch's image from `make image`. Produces RECORDS synthetic call records spread over the
# HOURS whole hours before this one, applies the kind overlay to a fresh namespace pointed at
# the local Kafka, Redis and MinIO, starts the CronJob's coordinator once, waits, and prints its
# table (records, MB, ratio, seconds per window) with the wall time. Every pod runs with
# hostNetwork: all traffic stays on 127.0.0.1.
set -euo pipefail
: "${RECORDS:=2000000}" "${HOURS:=3}" "${SHARDS:=4}" "${PARALLELISM:=2}"
: "${KARCHDEV_CACHE:=$HOME/.cache/karch}" "${KARCHDEV_STATE:=$KARCHDEV_CACHE/state}"
: "${KARCHDEV_KAFKA_PORT:=19092}" "${KARCHDEV_REDIS_PORT:=16379}" "${KARCHDEV_S3_PORT:=19000}"
: "${KARCHDEV_S3_BUCKET:=karch-test}" "${KARCHDEV_S3_ACCESS_KEY:=karchtest}" "${KARCHDEV_S3_SECRET_KEY:=karchtest-secret}"
root=$(cd "$(dirname "$0")/../.." && pwd)
export KUBECONFIG=$KARCHDEV_STATE/kube/admin.kubeconfig
crictl() { "$KARCHDEV_CACHE/bin/crictl" --runtime-endpoint "unix://$KARCHDEV_STATE/node/containerd/containerd.sock" "$@"; }
log() { printf 'bench/node: %s\n' "$*" >&2; }

ns="karch-bench-$(date -u +%Y%m%d-%H%M%S)"
topic=$ns
log "producing $RECORDS call records over $HOURS hours to topic $topic"
go run -C "$root" ./tests/demo/produce --brokers "127.0.0.1:$KARCHDEV_KAFKA_PORT" --topic "$topic" --partitions 8 \
  --records "$RECORDS" --hours "$HOURS"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
api=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
api=${api#https://}
cat >"$dir/kustomization.yaml" <<YAML
resources: ["$(realpath --relative-to="$dir" "$root/deploy/overlays/kind")"]
namespace: $ns
patches:
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: karch-pipeline}
      data:
        KARCH_PIPELINE: $ns
        KARCH_TOPIC: $topic
        KARCH_BROKERS: 127.0.0.1:$KARCHDEV_KAFKA_PORT
        KARCH_REDIS: 127.0.0.1:$KARCHDEV_REDIS_PORT
        KARCH_STORE: s3://$KARCHDEV_S3_BUCKET/bench-node
        KARCH_S3_ENDPOINT: http://127.0.0.1:$KARCHDEV_S3_PORT
        KARCH_WINDOW: 1h
        KARCH_LATENESS: 0s
        KARCH_START: "$(date -u -d "-$HOURS hours" +%Y-%m-%dT%H:00:00Z)"
        KARCH_MAX_WINDOWS: "$HOURS"
        KARCH_SHARDS: "$SHARDS"
        KARCH_PARALLELISM: "$PARALLELISM"
        KARCH_SHARD_HOST_NETWORK: "true"
  - patch: |-
      apiVersion: v1
      kind: Secret
      metadata: {name: karch-s3}
      stringData: {credentials: "[default]\naws_access_key_id = $KARCHDEV_S3_ACCESS_KEY\naws_secret_access_key = $KARCHDEV_S3_SECRET_KEY\n"}
  - patch: |-
      apiVersion: v1
      kind: Secret
      metadata: {name: karch-redis}
      stringData: {password: ""}
  - path: coordinator.yaml
YAML
sed -e "s/@HOST@/${api%:*}/" -e "s/@PORT@/${api#*:}/" "$root/tests/kube/testdata/node-coordinator.yaml" >"$dir/coordinator.yaml"
kubectl apply -k "$dir" >/dev/null
log "namespace $ns; starting the coordinator"
t0=$(date +%s.%N)
kubectl -n "$ns" create job --from=cronjob/karch-cdr bench >/dev/null
kubectl -n "$ns" wait --for=condition=complete job/bench --timeout=60m >/dev/null
t1=$(date +%s.%N)
id=$(kubectl -n "$ns" get pods -l batch.kubernetes.io/job-name=bench -o jsonpath='{.items[0].status.containerStatuses[0].containerID}')
crictl logs "${id#containerd://}" 2>/dev/null | grep -v '^{' # the results table; JSON log lines are the rest
echo "wall seconds (job created to complete): $(echo "$t1 - $t0" | bc)"
echo "shard pods: $(kubectl -n "$ns" get pods -l app.kubernetes.io/component=shard --no-headers | wc -l)"
kubectl delete namespace "$ns" --wait=false >/dev/null
