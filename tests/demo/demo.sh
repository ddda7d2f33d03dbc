#!/usr/bin/env bash
# make demo: one million synthetic call records over the last three hours, archived window by
# window by `karch run`, its shards as local processes, then checked and queried.
#
#   STORE=dir (the default): Kafka is the only server; the archive goes to a directory
#                            (bin/demo/archive) under an in-process lease
#   STORE=s3:                the production path: the local MinIO, the Redis lease, and an
#                            Iceberg table in the local REST catalog
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${STORE:=dir}" "${DEMO_RECORDS:=1000000}"
: "${KARCHDEV_KAFKA_PORT:=19092}" "${KARCHDEV_REDIS_PORT:=16379}" "${KARCHDEV_S3_PORT:=19000}"
: "${KARCHDEV_ICEBERG_REST_PORT:=18181}"
: "${KARCHDEV_S3_BUCKET:=karch-test}" "${KARCHDEV_S3_ACCESS_KEY:=karchtest}" "${KARCHDEV_S3_SECRET_KEY:=karchtest-secret}"
[[ $STORE == dir || $STORE == s3 ]] || { echo "demo: STORE=$STORE: want dir or s3" >&2; exit 3; }

began=$SECONDS
pipeline="demo-$(date -u +%Y%m%d-%H%M%S)"
brokers="127.0.0.1:$KARCHDEV_KAFKA_PORT"
voice="$pipeline.voice" sms="$pipeline.sms"
echo "== 1. producing $DEMO_RECORDS call records: two thirds to topic $voice, a third to $sms"
bin/demo-produce --brokers "$brokers" --topic "$voice" --partitions 8 --records "$((DEMO_RECORDS * 2 / 3))" --hours 3
bin/demo-produce --brokers "$brokers" --topic "$sms" --partitions 4 --records "$((DEMO_RECORDS - DEMO_RECORDS * 2 / 3))" --hours 3

# The pipeline's settings, as a deployment would give them; credentials only in the environment.
# One pipeline archives both topics: every topic whose whole name the pattern matches.
export KARCH_PIPELINE="$pipeline" KARCH_TOPICS_PATTERN="${pipeline}\.(voice|sms)" KARCH_BROKERS="$brokers"
export KARCH_WINDOW=1h KARCH_LATENESS=1m KARCH_SHARDS=4 KARCH_PARALLELISM=2
export KARCH_PIECE_RECORDS=100000 KARCH_START="$(date -u -d '-3 hours' +%Y-%m-%dT%H:00:00Z)" KARCH_LOG_LEVEL=warn
# Every piece in two formats in one commit: JSON Lines, and Parquet with typed columns.
export KARCH_FORMATS=jsonl,parquet
export KARCH_VALUE_COLUMNS=caller:string,callee:string,cell:string,start:timestamp,duration_ms:int64,result:string,imsi:string
dir="$pipeline/dt=$(date -u -d "$KARCH_START" +%Y-%m-%d)/window=$(date -u -d "$KARCH_START" +%H%M)Z-1h"
if [[ $STORE == dir ]]; then
  archive="$PWD/bin/demo/archive"
  mkdir -p "$archive"
  # No redis: the lease is in-process, which keeps apart only runs in this one process.
  export KARCH_STORE="$archive"
else
  export KARCH_STORE="s3://$KARCHDEV_S3_BUCKET/archive" KARCH_S3_ENDPOINT="http://127.0.0.1:$KARCHDEV_S3_PORT" KARCH_S3_PATH_STYLE=true
  export KARCH_REDIS="127.0.0.1:$KARCHDEV_REDIS_PORT"
  # Each committed window joins an Iceberg table, through the local REST catalog, in its own
  # snapshot: the table's data files are the Parquet pieces themselves.
  table="demo.calls_$(date -u +%Y%m%d_%H%M%S)"
  catalog="http://127.0.0.1:$KARCHDEV_ICEBERG_REST_PORT"
  export KARCH_TABLE="$table" KARCH_TABLE_CATALOG=rest KARCH_TABLE_CATALOG_URI="$catalog" KARCH_TABLE_PARTITION=hour
  export AWS_ACCESS_KEY_ID="$KARCHDEV_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$KARCHDEV_S3_SECRET_KEY"
fi
echo "   store: $KARCH_STORE"

echo "== 2. the configuration checked against the servers, before the first run (karch doctor)"
bin/karch doctor

echo "== 3. what the coordinator will do (karch plan)"
bin/karch plan | awk 'NR == 1 || $3 ~ /\/0$/'
echo "   (partition 0 of each topic and window shown; 'karch plan' lists all twelve)"

echo "== 4. archiving every due window (karch run)"
bin/karch run

echo "== 5. the pipeline's windows (karch status)"
bin/karch status

echo "== 6. the first record of the first piece, read back with Debian's zstd: no karch needed"
# get KEY FILE: an object of the archive, with no karch; the manifest names the pieces (the
# first window's first piece starts where its records do, not always at offset 0).
get() {
  if [[ $STORE == dir ]]; then
    cp "$archive/$1" "$2"
  else
    curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      "$KARCH_S3_ENDPOINT/$KARCHDEV_S3_BUCKET/archive/${1//=/%3D}" -o "$2"
  fi
}
piece="$(mktemp)"
get "$dir/MANIFEST.json" "$piece"
first="$(grep -o "data/$voice/0/[0-9]*\.jsonl\.zst" "$piece" | sort | head -n 1)"
get "$dir/$first" "$piece"
zstd -dqf "$piece" -o "$piece.jsonl"
head -n 1 "$piece.jsonl"
echo "   ($(wc -l <"$piece.jsonl") lines in that piece)"
rm -f "$piece" "$piece.jsonl"

if [[ $STORE == dir ]]; then
  echo "== 7. every window checked against the store, every object of both formats read through (karch verify --deep)"
  bin/karch verify --deep
  echo "== 8. an analyst's query of the Parquet pieces, by DuckDB, straight from the directory"
  "${KARCHDEV_CACHE:-$HOME/.cache/karch}/duckdb-core/bin/python" tests/demo/query.py parquet "$archive/$pipeline"
else
  echo "== 7. every window checked against the store, every object of both formats read through, and the"
  echo "      table's files proved to be exactly the committed Parquet pieces (karch verify --deep --table)"
  bin/karch verify --deep --table
  echo "== 8. an analyst's query of the Iceberg table $table, by DuckDB through the REST catalog"
  "${KARCHDEV_CACHE:-$HOME/.cache/karch}/duckdb/bin/python" tests/demo/query.py iceberg "$catalog" "$table"
fi

echo "done in $((SECONDS - began)) s: the current hour is archived by the next run, once it has ended and 1m has passed."
