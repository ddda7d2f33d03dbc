"""Reads Parquet pieces with pyarrow, Apache Arrow's own reader, and prints their records.

Usage: parquet_records.py FILE...
Prints one JSON object per record, in file order: partition, offset, timestamp (int64
milliseconds), timestamp_type, key and value (base64, or null), headers ([key, base64 or
null] pairs), and the file's karch.format metadata.
"""
import base64
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


for path in sys.argv[1:]:
    f = pq.ParquetFile(path)
    fmt = (f.metadata.metadata or {}).get(b"karch.format", b"").decode()
    table = f.read()
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    cols = {name: table.column(name).to_pylist() for name in ("partition", "offset", "timestamp_type", "key", "value", "headers")}
    for i in range(table.num_rows):
        print(json.dumps({
            "format": fmt,
            "partition": cols["partition"][i],
            "offset": cols["offset"][i],
            "timestamp": ts[i],
            "timestamp_type": cols["timestamp_type"][i],
            "key": b64(cols["key"][i]),
            "value": b64(cols["value"][i]),
            "headers": [[h["key"], b64(h["value"])] for h in cols["headers"][i]],
        }))
