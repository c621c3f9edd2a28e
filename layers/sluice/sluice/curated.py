"""The curated (typed) data written by ingest and read by training.

Format: ``data.csv`` (UTF-8, comma, ISO-8601 datetimes, ``.`` decimals, header = canonical
column names) plus ``schema.json`` (``{"columns": [{"name", "type"}]}``) that restores the types
on read. Parquet was left out of the skeleton: pyarrow alone is ~128 MB and would not fit beside
the ML layer in one function.
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from sluice.storage import get_object, put_bytes, put_json

if TYPE_CHECKING:
    import pandas as pd


def schema_of(df: pd.DataFrame, types: dict[str, str]) -> dict[str, Any]:
    return {"columns": [{"name": c, "type": types.get(c, "string")} for c in df.columns]}


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S").encode("utf-8")


def from_csv_bytes(body: bytes, schema: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    types = {c["name"]: c["type"] for c in schema["columns"]}
    dtype = {n: "string" for n, t in types.items() if t in ("string", "text")}
    df = pd.read_csv(io.BytesIO(body), dtype=dtype, keep_default_na=False, na_values=[""])
    for name, kind in types.items():
        if kind == "datetime":
            df[name] = pd.to_datetime(df[name], format="%Y-%m-%dT%H:%M:%S")
        elif kind == "float":
            df[name] = df[name].astype("float64")
        elif kind == "int":
            df[name] = df[name].astype("Int64")
    return df


def write_curated(
    bucket: str, data_key: str, schema_key: str, df: pd.DataFrame, types: dict[str, str]
) -> None:
    put_bytes(bucket, data_key, to_csv_bytes(df), "text/csv")
    put_json(bucket, schema_key, schema_of(df, types))


def read_curated(bucket: str, data_key: str, schema_key: str) -> pd.DataFrame:
    schema = json.loads(get_object(bucket, schema_key).body)
    return from_csv_bytes(get_object(bucket, data_key).body, schema)
