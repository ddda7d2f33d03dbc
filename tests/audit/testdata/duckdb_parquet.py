"""Queries an archive's Parquet pieces with DuckDB, as an analyst would.

Usage: duckdb_parquet.py GLOB   (an s3:// URL; the endpoint and credentials come from
DUCKDB_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
Prints one JSON object: {"windows": {"<dt>/<window>": [records, distinct offsets]},
"cells": {"<cell>": [calls, total duration_ms]}}.
"""
import json
import os
import pathlib
import sys

import duckdb
import duckdb_extension_httpfs

glob = sys.argv[1]
con = duckdb.connect()
ext = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
con.execute(f"LOAD '{ext}'")
con.execute(
    "CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
    {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
     "endpoint": os.environ["DUCKDB_S3_ENDPOINT"]},
)
pieces = "read_parquet(?, hive_partitioning = true)"
windows = con.execute(
    f"""SELECT dt, "window", count(*), count(DISTINCT (partition, "offset")) FROM {pieces} GROUP BY ALL ORDER BY ALL""",
    [glob],
).fetchall()
cells = con.execute(
    f"SELECT cell, count(*), sum(duration_ms) FROM {pieces} WHERE cell IS NOT NULL GROUP BY cell ORDER BY cell",
    [glob],
).fetchall()
print(json.dumps({
    "windows": {f"{dt}/{window}": [n, distinct] for dt, window, n, distinct in windows},
    "cells": {cell: [n, int(total or 0)] for cell, n, total in cells},
}))
