#!/usr/bin/env bash
# make demo: one million synthetic call records over the last three hours, archived window by
# window into the local MinIO by `karch run`, its shards as local processes, then checked.
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${KARCHDEV_KAFKA_PORT:=19092}" "${KARCHDEV_REDIS_PORT:=16379}" "${KARCHDEV_S3_PORT:=19000}"
: "${KARCHDEV_ICEBERG_REST_PORT:=18181}"
: "${KARCHDEV_S3_BUCKET:=karch-test}" "${KARCHDEV_S3_ACCESS_KEY:=karchtest}" "${KARCHDEV_S3_SECRET_KEY:=karchtest-secret}"
: "${DEMO_RECORDS:=1000000}"

pipeline="demo-$(date -u +%Y%m%d-%H%M%S)"
brokers="127.0.0.1:$KARCHDEV_KAFKA_PORT"
echo "== 1. producing $DEMO_RECORDS call records to topic $pipeline"
go run ./tests/demo/produce --brokers "$brokers" --topic "$pipeline" --partitions 8 --records "$DEMO_RECORDS" --hours 3

# The pipeline's settings, as a deployment would give them; credentials only in the environment.
export KARCH_PIPELINE="$pipeline" KARCH_TOPIC="$pipeline" KARCH_BROKERS="$brokers"
export KARCH_STORE="s3://$KARCHDEV_S3_BUCKET/archive" KARCH_S3_ENDPOINT="http://127.0.0.1:$KARCHDEV_S3_PORT" KARCH_S3_PATH_STYLE=true
export KARCH_REDIS="127.0.0.1:$KARCHDEV_REDIS_PORT" KARCH_WINDOW=1h KARCH_LATENESS=1m KARCH_SHARDS=4 KARCH_PARALLELISM=2
export KARCH_PIECE_RECORDS=100000 KARCH_START="$(date -u -d '-3 hours' +%Y-%m-%dT%H:00:00Z)" KARCH_LOG_LEVEL=warn
# Every piece in two formats in one commit: JSON Lines, and Parquet with typed columns.
export KARCH_FORMATS=jsonl,parquet
export KARCH_VALUE_COLUMNS=caller:string,callee:string,cell:string,start:timestamp,duration_ms:int64,result:string,imsi:string
# Each committed window joins an Iceberg table, through the local REST catalog, in its own
# snapshot: the table's data files are the Parquet pieces themselves.
table="demo.calls_$(date -u +%Y%m%d_%H%M%S)"
catalog="http://127.0.0.1:$KARCHDEV_ICEBERG_REST_PORT"
export KARCH_TABLE="$table" KARCH_TABLE_CATALOG=rest KARCH_TABLE_CATALOG_URI="$catalog" KARCH_TABLE_PARTITION=hour
export AWS_ACCESS_KEY_ID="$KARCHDEV_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$KARCHDEV_S3_SECRET_KEY"

echo "== 2. the configuration checked against the servers, before the first run (karch doctor)"
bin/karch doctor

echo "== 3. what the coordinator will do (karch plan)"
bin/karch plan | awk 'NR == 1 || $3 ~ /\/0$/'
echo "   (partition 0 of each window shown; 'karch plan' lists all eight)"

echo "== 4. archiving every due window (karch run)"
bin/karch run

echo "== 5. the pipeline's windows, and whether each is in the table (karch status)"
bin/karch status

echo "== 6. the first record of the first piece, read back with curl and Debian's zstd: no karch needed"
dir="archive/$pipeline/dt=$(date -u -d "$KARCH_START" +%Y-%m-%d)/window=$(date -u -d "$KARCH_START" +%H%M)Z-1h"
piece="$(mktemp)"
curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  "$KARCH_S3_ENDPOINT/$KARCHDEV_S3_BUCKET/${dir//=/%3D}/data/$pipeline/0/00000000000000000000.jsonl.zst" -o "$piece"
zstd -dqf "$piece" -o "$piece.jsonl"
head -n 1 "$piece.jsonl"
echo "   ($(wc -l <"$piece.jsonl") lines in that piece)"
rm -f "$piece" "$piece.jsonl"
echo "== 7. every window checked against the store, every object of both formats read through, and the"
echo "      table's files proved to be exactly the committed Parquet pieces (karch verify --deep --table)"
bin/karch verify --deep --table

echo "== 8. an analyst's query of the Iceberg table $table, by DuckDB through the REST catalog"
"${KARCHDEV_CACHE:-$HOME/.cache/karch}/duckdb/bin/python" tests/demo/query.py "$catalog" "$table"

echo "done: the current hour is archived by the next run, once it has ended and 1m has passed."
