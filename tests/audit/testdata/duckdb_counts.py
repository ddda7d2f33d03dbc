"""Counts an archive's records per window with DuckDB, as a user would query it.

Usage: duckdb_counts.py GLOB   (a local path or an s3:// URL; for S3, the endpoint and
credentials come from DUCKDB_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
Prints one JSON object: {"<dt>/<window>": count, ...}.
"""
import json
import os
import pathlib
import sys

import duckdb
import duckdb_extension_httpfs

glob = sys.argv[1]
con = duckdb.connect()
if glob.startswith("s3://"):
    # The httpfs extension comes from its PyPI package (no download at run time); its
    # version must be DuckDB's own.
    ext = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    con.execute(f"LOAD '{ext}'")
    con.execute(
        "CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
        {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
         "endpoint": os.environ["DUCKDB_S3_ENDPOINT"]},
    )
# "window" and "offset" are SQL keywords: quoted. The columns named are the ones every line
# has; key and value come in three encodings (docs/FORMAT.md) and are left out of a count.
rows = con.execute(
    """SELECT dt, "window", count(*), count(DISTINCT (partition, "offset"))
       FROM read_json(?, format = 'newline_delimited', compression = 'zstd', hive_partitioning = true,
                      columns = {'topic': 'VARCHAR', 'partition': 'INTEGER', 'offset': 'BIGINT'})
       GROUP BY ALL ORDER BY ALL""",
    [glob],
).fetchall()
print(json.dumps({f"{dt}/{window}": [n, distinct] for dt, window, n, distinct in rows}))
