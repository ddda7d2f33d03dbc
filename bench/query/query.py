"""make bench-query: three analyst queries over one archive of the bench topic, by DuckDB
straight from the local MinIO, over the JSON Lines and over the Parquet pieces of the same
records, alternating, each query's answers compared between the two.

Usage: query.py [--runs N] [--prefix s3://bucket/shardbench]
The archive is the newest one that `make bench-shard BENCH_SHARD_FLAGS=-parquet` left under
the prefix. Prints a table: per query and format, the median seconds over the runs and the
bytes DuckDB fetched from the store (EXPLAIN ANALYZE's HTTP stats), then the ratios.
"""
import argparse
import os
import pathlib
import re
import statistics
import time

import duckdb
import duckdb_extension_httpfs

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--prefix", default="s3://" + os.environ.get("KARCH_TEST_S3_BUCKET", "karch-test") + "/shardbench")
args = parser.parse_args()

con = duckdb.connect()
ext = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
con.execute(f"LOAD '{ext}'")
endpoint = os.environ.get("KARCH_TEST_S3_ENDPOINT", "http://127.0.0.1:19000").split("://", 1)[1]
con.execute(
    "CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
    {"key": os.environ.get("KARCH_TEST_S3_ACCESS_KEY", "karchtest"),
     "secret": os.environ.get("KARCH_TEST_S3_SECRET_KEY", "karchtest-secret"), "endpoint": endpoint},
)
# No cache between runs: every query reads the store again, as a first query would.
con.execute("SET enable_http_metadata_cache = false")
con.execute("SET enable_external_file_cache = false")

files = [r[0] for r in con.execute("SELECT file FROM glob(?)", [args.prefix + "/*-parquet/*/*/data/*/*/*.parquet"]).fetchall()]
if not files:
    raise SystemExit(f"no Parquet pieces under {args.prefix}: run make bench-shard BENCH_SHARD_FLAGS=-parquet first")
pipeline = max(f.split("/")[len(args.prefix.split("/"))] for f in files)
files = [f for f in files if f.startswith(f"{args.prefix}/{pipeline}/")]
root = f"{args.prefix}/{pipeline}/*/*/data/*/*"
parquet = f"read_parquet('{root}/*.parquet')"
jsonl = (f"read_json('{root}/*.jsonl.zst', format = 'newline_delimited', compression = 'zstd', "
         "columns = {'offset': 'BIGINT', 'timestamp': 'VARCHAR', 'value': 'JSON'})")
caller = con.execute(f"SELECT caller FROM {parquet} WHERE \"offset\" = 1000 LIMIT 1").fetchone()[0]

queries = [
    ("records per hour",
     f"SELECT CAST(date_trunc('hour', timestamp) AS VARCHAR) AS h, count(*) FROM {parquet} GROUP BY h ORDER BY h",
     f"SELECT CAST(date_trunc('hour', CAST(timestamp AS TIMESTAMPTZ)) AS VARCHAR) AS h, count(*) FROM {jsonl} GROUP BY h ORDER BY h"),
    ("calls and mean duration per cell, top 10",
     f"SELECT cell, count(*) AS n, avg(duration_ms) FROM {parquet} GROUP BY cell ORDER BY n DESC, cell LIMIT 10",
     f"SELECT value->>'cell' AS cell, count(*) AS n, avg(CAST(value->>'duration_ms' AS BIGINT)) FROM {jsonl} GROUP BY cell ORDER BY n DESC, cell LIMIT 10"),
    (f"one caller's records ({caller})",
     f"SELECT \"offset\", CAST(start AS VARCHAR), callee, duration_ms FROM {parquet} WHERE caller = '{caller}' ORDER BY \"offset\"",
     f"SELECT \"offset\", CAST(CAST(value->>'start' AS TIMESTAMPTZ) AS VARCHAR), value->>'callee', CAST(value->>'duration_ms' AS BIGINT) FROM {jsonl} WHERE value->>'caller' = '{caller}' ORDER BY \"offset\""),
]


def timed(sql):
    """Runs sql once; returns its rows and seconds."""
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return rows, time.perf_counter() - t0


UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def bytes_read(sql):
    """The bytes DuckDB fetched from the store for sql: EXPLAIN ANALYZE's HTTP stats."""
    plan = "".join(row[1] for row in con.execute("EXPLAIN ANALYZE " + sql).fetchall())
    m = re.search(r"in: ([0-9.]+) (bytes|KiB|MiB|GiB|TiB)", plan)
    if not m:
        raise SystemExit(f"no HTTP stats in the plan of {sql}")
    return float(m.group(1)) * UNITS[m.group(2)]


def same(a, b):
    norm = lambda rows: [tuple(round(v, 6) if isinstance(v, float) else str(v) for v in r) for r in rows]
    return norm(a) == norm(b)


records = con.execute(f"SELECT count(*) FROM {parquet}").fetchone()[0]
print(f"archive {args.prefix}/{pipeline}: {len(files)} pieces, {records} records; DuckDB {duckdb.__version__}, {args.runs} runs per query and format, alternating")
print(f"{'query':<48} {'format':<8} {'median s':>9} {'MB read':>9}")
for name, pq_sql, jl_sql in queries:
    runs = {"parquet": [], "jsonl": []}
    answers = {}
    for _ in range(args.runs):
        for fmt, sql in (("jsonl", jl_sql), ("parquet", pq_sql)):
            rows, seconds = timed(sql)
            runs[fmt].append(seconds)
            answers[fmt] = rows
    if not same(answers["jsonl"], answers["parquet"]):
        raise SystemExit(f"{name}: the formats answer differently:\n jsonl   {answers['jsonl'][:5]}\n parquet {answers['parquet'][:5]}")
    med = {f: (statistics.median(r), bytes_read(jl_sql if f == "jsonl" else pq_sql)) for f, r in runs.items()}
    for fmt in ("jsonl", "parquet"):
        print(f"{name:<48} {fmt:<8} {med[fmt][0]:>9.2f} {med[fmt][1] / 1e6:>9.1f}")
    print(f"{'':<48} {'ratio':<8} {med['jsonl'][0] / med['parquet'][0]:>8.1f}x {med['jsonl'][1] / max(med['parquet'][1], 1):>8.1f}x   (JSON Lines / Parquet; same answers)")
