"""make demo's last step: an analyst's query of the archive as an Iceberg table, by DuckDB
through the local REST catalog, its data files (karch's Parquet pieces) read straight from
the local MinIO.

Usage: query.py CATALOG_URI NAMESPACE.TABLE   (endpoint and credentials from
KARCH_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
"""
import os
import pathlib
import sys
import urllib.parse

import duckdb
import duckdb_extension_avro
import duckdb_extension_httpfs
import duckdb_extension_iceberg

uri, name = sys.argv[1:3]
con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
# The extensions come from their PyPI packages (no download at run time), avro before
# iceberg, which reads its manifests with it.
for mod, ext in [(duckdb_extension_httpfs, "httpfs"), (duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")]:
    con.execute(f"LOAD '{pathlib.Path(mod.__file__).parent}/extensions/v{duckdb.__version__}/{ext}.duckdb_extension'")
con.execute(
    "CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
    {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
     "endpoint": urllib.parse.urlparse(os.environ["KARCH_S3_ENDPOINT"]).netloc},
)
con.execute(f"ATTACH '' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
namespace, table = name.rsplit(".", 1)
sql = f"""SELECT date_trunc('hour', "timestamp") AS hour, result, count(*) AS calls, round(avg(duration_ms) / 1000) AS avg_seconds
FROM lake."{namespace}"."{table}"
GROUP BY ALL ORDER BY hour, calls DESC"""
print(sql)
con.sql(sql).show(max_rows=40)
