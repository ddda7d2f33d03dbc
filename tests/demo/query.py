"""make demo's last step: an analyst's query of the archive's Parquet pieces, straight from
the local MinIO with DuckDB, the window folders read as columns (hive partitioning).

Usage: query.py S3_GLOB   (endpoint and credentials from KARCH_S3_ENDPOINT,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""
import os
import pathlib
import sys
import urllib.parse

import duckdb
import duckdb_extension_httpfs

con = duckdb.connect()
ext = pathlib.Path(duckdb_extension_httpfs.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
con.execute(f"LOAD '{ext}'")
con.execute(
    "CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
    {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
     "endpoint": urllib.parse.urlparse(os.environ["KARCH_S3_ENDPOINT"]).netloc},
)
glob = sys.argv[1].replace("'", "''")
sql = f"""SELECT "window", result, count(*) AS calls, round(avg(duration_ms) / 1000) AS avg_seconds
FROM read_parquet('{glob}', hive_partitioning = true)
GROUP BY ALL ORDER BY "window", calls DESC"""
print(sql)
con.sql(sql).show(max_rows=40)
