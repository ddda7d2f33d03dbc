"""make demo's last step: an analyst's query of the archive by DuckDB.

Usage:
  query.py parquet DIR                        the Parquet pieces under a directory store's
                                              pipeline folder, read in place
  query.py iceberg CATALOG_URI NAMESPACE.TABLE   the Iceberg table, through the REST catalog,
                                              its data files (karch's Parquet pieces) read
                                              straight from the local MinIO (endpoint and
                                              credentials from KARCH_S3_ENDPOINT,
                                              AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
"""
import os
import pathlib
import sys
import urllib.parse

import duckdb

QUERY = """SELECT topic, date_trunc('hour', "timestamp") AS hour, result, count(*) AS calls, round(avg(duration_ms) / 1000) AS avg_seconds
FROM {source}
GROUP BY ALL ORDER BY topic, hour, calls DESC"""


def iceberg(con, uri, name):
    # The extensions come from their PyPI packages (no download at run time), avro before
    # iceberg, which reads its manifests with it.
    import duckdb_extension_avro
    import duckdb_extension_httpfs
    import duckdb_extension_iceberg

    for mod, ext in [(duckdb_extension_httpfs, "httpfs"), (duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")]:
        con.execute(f"LOAD '{pathlib.Path(mod.__file__).parent}/extensions/v{duckdb.__version__}/{ext}.duckdb_extension'")
    con.execute(
        "CREATE SECRET (TYPE s3, KEY_ID $key, SECRET $secret, ENDPOINT $endpoint, URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')",
        {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
         "endpoint": urllib.parse.urlparse(os.environ["KARCH_S3_ENDPOINT"]).netloc},
    )
    con.execute(f"ATTACH '' AS lake (TYPE iceberg, ENDPOINT '{uri}', AUTHORIZATION_TYPE 'none')")
    namespace, table = name.rsplit(".", 1)
    return f'lake."{namespace}"."{table}"'


def main(argv):
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    if argv[:1] == ["parquet"] and len(argv) == 2:
        # Read after karch verify has checked that every piece there is a committed one.
        source = f"read_parquet('{argv[1]}/*/*/data/*/*/*.parquet', hive_partitioning = true)"
    elif argv[:1] == ["iceberg"] and len(argv) == 3:
        source = iceberg(con, argv[1], argv[2])
    else:
        sys.exit(__doc__)
    sql = QUERY.format(source=source)
    print(sql)
    con.sql(sql).show(max_rows=40)


if __name__ == "__main__":
    main(sys.argv[1:])
