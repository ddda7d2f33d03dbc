"""Reads karch's Iceberg table with pyiceberg and DuckDB's iceberg extension, which share no
code with karch (or with each other), as an analyst would.

Usage: iceberg_table.py records|windows|duckdb|tamper CATALOG_URI TABLE
S3 (MinIO) comes from DUCKDB_S3_ENDPOINT (host:port), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
  records  one JSON object per record, read by pyiceberg (as parquet_records.py prints them)
  windows  {"<window start>": records the window's snapshot added}, each snapshot read by
           pyiceberg as of itself, less the snapshot before
  duckdb   {"rows", "distinct", "partitions": {p: [min, max offset]}} by DuckDB over the
           REST catalog
  tamper   appends one record with pyiceberg: a data file that no manifest of karch lists
"""
import base64
import json
import os
import pathlib
import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog

what, uri, name = sys.argv[1:4]
endpoint = "http://" + os.environ["DUCKDB_S3_ENDPOINT"]
key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def table():
    cat = load_catalog("karch", **{"type": "rest", "uri": uri, "s3.endpoint": endpoint, "s3.access-key-id": key,
                                   "s3.secret-access-key": secret, "s3.region": "us-east-1"})
    return cat.load_table(name)


if what == "records":
    t = table().scan().to_arrow()
    ts = t.column("timestamp").cast(pa.int64()).to_pylist()  # microseconds in Iceberg
    cols = {c: t.column(c).to_pylist() for c in ("partition", "offset", "timestamp_type", "key", "value", "headers")}
    for i in range(t.num_rows):
        print(json.dumps({
            "partition": cols["partition"][i], "offset": cols["offset"][i], "timestamp": ts[i] // 1000,
            "timestamp_type": cols["timestamp_type"][i], "key": b64(cols["key"][i]), "value": b64(cols["value"][i]),
            "headers": [[h["key"], b64(h["value"])] for h in cols["headers"][i]],
        }))
elif what == "windows":
    tbl = table()
    out, before = {}, 0
    for s in sorted(tbl.snapshots(), key=lambda s: s.sequence_number):
        n = tbl.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows
        out[s.summary["karch.window.start"]] = n - before
        before = n
    print(json.dumps(out))
elif what == "duckdb":
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_httpfs
    import duckdb_extension_iceberg

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for mod, ext in [(duckdb_extension_httpfs, "httpfs"), (duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")]:
        con.execute(f"LOAD '{pathlib.Path(mod.__file__).parent}/extensions/v{duckdb.__version__}/{ext}.duckdb_extension'")
    con.execute("CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
                {"key": key, "secret": secret, "endpoint": os.environ["DUCKDB_S3_ENDPOINT"]})
    con.execute(f"ATTACH '' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
    ns, tname = name.rsplit(".", 1)
    rel = f'lake."{ns}"."{tname}"'
    rows, distinct = con.execute(f'SELECT count(*), count(DISTINCT (partition, "offset")) FROM {rel}').fetchone()
    parts = {str(p): [lo, hi] for p, lo, hi in con.execute(f'SELECT partition, min("offset"), max("offset") FROM {rel} GROUP BY ALL ORDER BY ALL').fetchall()}
    print(json.dumps({"rows": rows, "distinct": distinct, "partitions": parts}))
elif what == "tamper":
    tbl = table()
    row = {"topic": "t", "partition": 0, "offset": 0, "timestamp": 0, "timestamp_type": "create", "headers": []}
    tbl.append(pa.Table.from_pylist([row], schema=tbl.schema().as_arrow()))
else:
    sys.exit(f"unknown command {what}")
