"""The curated (typed) data written by ingest and read by training: ``data.npz`` + ``schema.json``.

``data.npz`` is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays, stored uncompressed, no pickled
objects; ``numpy.load`` opens it) holding the rows in groups of ``GROUP_ROWS`` (the last group may be
shorter). Row group ``g`` is three members:

- ``g<g>.rows``: a structured array, one record per row, field ``c<j>`` for the schema's column ``j``:
  float64 for ``float`` and ``int`` (NaN for null; ``int`` values are whole), datetime64[s] for
  ``datetime`` (NaT for null), and for ``string`` / ``text`` an int8/int16/int32 code (-1 for null)
  into the column's dictionary: the distinct values of the group, sorted by code point;
- ``g<g>.dict``: uint8, the UTF-8 bytes of the dictionaries' values end to end, column after column;
- ``g<g>.ends``: int64, the byte offset in ``dict`` where each value ends; ``g<g>.sizes``: int64, the
  number of values of each string column's dictionary, in column order.

``schema.json`` holds ``{"columns": [{"name", "type"}], "storage": {"format", "version", "rows",
"group_rows", "groups"}}``. Groups and dictionaries depend only on the rows, so the same rows always
give the same bytes (ingest writes the same file whatever its chunk size). ``read_curated`` returns
float64, ``Int64``, datetime64[us] and pandas ``string`` (``<NA>`` for null) columns.

Why not Parquet: pyarrow alone is ~128 MB and would not fit beside the ML layer in the train
function (228.5 of 250 MB used). Why not CSV: writing the rows back out as text took about a quarter
of ingest's time (0.2 s per million rows), and reading them back costs training a parse; typed arrays
cost neither.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np

from sluice.storage import get_object, put_bytes, put_json

if TYPE_CHECKING:
    import pandas as pd

DATA_FILE = "data.npz"
SCHEMA_FILE = "schema.json"
CONTENT_TYPE = "application/octet-stream"
FORMAT = "sluice-npz"
VERSION = 1
GROUP_ROWS = 1 << 14
DESCRIPTION = {
    "data": DATA_FILE,
    "schema": SCHEMA_FILE,
    "format": (
        f"NumPy .npz (uncompressed .npy arrays, no pickles), row groups of {GROUP_ROWS} rows, each a "
        "structured array with one field per column: float64 numbers (NaN null; int columns whole), "
        "datetime64[s] (NaT null), strings as int codes (-1 null) into the group's sorted UTF-8 "
        "dictionary; schema.json gives the column types and the row groups (see sluice.curated)"
    ),
    "why_not_parquet": "pyarrow (~128 MB) does not fit the train function's 250 MB (228.5 MB used)",
    "why_not_csv": "writing every row back out as text took about a quarter of ingest's time",
}
_NUMERIC = ("float", "int")
_STRINGS = ("string", "text")
_FIELD = {"float": np.dtype(np.float64), "int": np.dtype(np.float64), "datetime": np.dtype("datetime64[s]")}
_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same rows give the same bytes


class Strings(NamedTuple):
    """A string column of some rows: ``codes`` (per row) index ``values`` (str, any order, repeats
    allowed); values whose ``null`` is true are null."""

    codes: np.ndarray
    values: np.ndarray  # object array of str
    null: np.ndarray  # bool, one per value


Column = np.ndarray | Strings  # float64 numbers, int64 microseconds (datetime; NaT-int for null), or Strings
_NAT = np.iinfo(np.int64).min
_US_PER_S = 1_000_000


class _Ranked(NamedTuple):
    """Strings with their values ranked once: ``rank[codes[i]]`` is row i's position in ``distinct``
    (sorted, unique), -1 for null. Slicing rows keeps the ranking."""

    codes: np.ndarray
    rank: np.ndarray
    distinct: np.ndarray  # object array of str


_Piece = np.ndarray | _Ranked


def _sorted_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value in them). Values already in order (the parser's
    sorted categories) need no sort; otherwise a stable sort, linear on a few sorted runs
    (dictionaries being merged)."""
    if len(values) < 2:
        return values, np.arange(len(values))
    if bool(np.all(values[1:] >= values[:-1])):
        order, ordered = None, values
    else:
        order = np.argsort(values, kind="stable")
        ordered = values[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    ranks = np.cumsum(first) - 1
    if order is None:
        return ordered[first], ranks
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = ranks
    return ordered[first], inverse


def _ranked(strings: Strings) -> _Ranked:
    present = np.flatnonzero(~strings.null)
    distinct, inverse = _sorted_unique(strings.values[present])
    rank = np.full(len(strings.values), -1, dtype=np.int64)
    rank[present] = inverse
    return _Ranked(strings.codes, rank, distinct)


def _head(piece: _Piece, k: int) -> _Piece:
    if isinstance(piece, _Ranked):
        return piece._replace(codes=piece.codes[:k])
    return piece[:k]


def _tail(piece: _Piece, k: int) -> _Piece:
    if isinstance(piece, _Ranked):
        return piece._replace(codes=piece.codes[k:])
    return piece[k:]


def _rows(piece: _Piece) -> int:
    return len(piece.codes) if isinstance(piece, _Ranked) else len(piece)


def _code_dtype(size: int) -> np.dtype[Any]:
    return np.dtype(np.int8 if size < 1 << 7 else np.int16 if size < 1 << 15 else np.int32)


def _utf8(values: list[str]) -> tuple[bytes, np.ndarray]:
    """The values' UTF-8 bytes end to end and the length in bytes of each."""
    joined = "".join(values)
    blob = joined.encode("utf-8")
    if len(blob) == len(joined):  # ASCII: one byte per character
        return blob, np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    return blob, np.fromiter((len(v.encode("utf-8")) for v in values), dtype=np.int64, count=len(values))


def _used(piece: _Ranked) -> np.ndarray:
    """Which of ``piece.distinct`` its rows use."""
    ranks = piece.rank[np.bincount(piece.codes, minlength=len(piece.rank)).astype(bool)]
    used = np.zeros(len(piece.distinct), dtype=bool)
    used[ranks[ranks >= 0]] = True
    return used


class _Dictionary(NamedTuple):
    """A string column of one row group: its sorted distinct values and, per piece, the code of each
    of the piece's values (-1: null or unused)."""

    distinct: list[str]
    remaps: list[np.ndarray]
    dtype: np.dtype[Any]


def _dictionary(pieces: list[_Ranked]) -> _Dictionary:
    """The canonical dictionary of a string column's rows: the distinct non-null values, sorted."""
    used = [_used(p) for p in pieces]
    if len(pieces) == 1:
        distinct = pieces[0].distinct[used[0]]
        positions = [np.cumsum(used[0]) - 1]
    else:
        distinct, inverse = _sorted_unique(
            np.concatenate([p.distinct[u] for p, u in zip(pieces, used, strict=True)])
        )
        bounds = np.cumsum([0] + [int(u.sum()) for u in used])
        positions = []
        for k, u in enumerate(used):
            position = np.zeros(len(u), dtype=np.int64)
            position[u] = inverse[bounds[k] : bounds[k + 1]]
            positions.append(position)
    dtype = _code_dtype(len(distinct))
    remaps = []
    for piece, position in zip(pieces, positions, strict=True):
        remap = np.full(len(piece.rank), -1, dtype=dtype)
        ranked = piece.rank >= 0
        remap[ranked] = position[piece.rank[ranked]]
        remaps.append(remap)
    return _Dictionary(distinct.tolist(), remaps, dtype)


def _fill(field: np.ndarray, kind: str, pieces: list[_Piece], dictionary: _Dictionary | None) -> None:
    """Write one column's pieces into its field of the group's records."""
    start = 0
    for k, piece in enumerate(pieces):
        end = start + _rows(piece)
        if isinstance(piece, _Ranked):
            assert dictionary is not None
            np.take(dictionary.remaps[k], piece.codes, out=field[start:end], mode="clip")
        elif kind == "datetime":  # whole seconds, rounded down (as ISO-8601 text to the second would be)
            seconds = field[start:end].view(np.int64)
            np.floor_divide(piece, _US_PER_S, out=seconds)
            seconds[piece == _NAT] = _NAT
        else:
            field[start:end] = piece
        start = end


def encode_group(kinds: list[str], pieces: list[list[_Piece]], n: int) -> dict[str, np.ndarray]:
    """The members of one row group of ``n`` rows (``pieces``: those rows, as lists of columns)."""
    columns = [[p[j] for p in pieces] for j in range(len(kinds))]
    dictionaries = {
        j: _dictionary([c for c in column if isinstance(c, _Ranked)])
        for j, (kind, column) in enumerate(zip(kinds, columns, strict=True))
        if kind in _STRINGS
    }
    rows = np.empty(
        n, dtype=[(f"c{j}", _FIELD.get(kind) or dictionaries[j].dtype) for j, kind in enumerate(kinds)]
    )
    for j, (kind, column) in enumerate(zip(kinds, columns, strict=True)):
        _fill(rows[f"c{j}"], kind, column, dictionaries.get(j))
    words = [w for d in dictionaries.values() for w in d.distinct]
    blob, lengths = _utf8(words)
    return {
        "rows": rows,
        "dict": np.frombuffer(blob, dtype=np.uint8),
        "ends": np.cumsum(lengths),
        "sizes": np.asarray([len(d.distinct) for d in dictionaries.values()], dtype=np.int64),
    }


class CuratedWriter:
    """Appends typed rows to ``data.npz`` (a path or a binary file), one row group at a time.

    ``append`` buffers rows until a row group is full, so what is written does not depend on how the
    rows were split between calls; memory holds at most one row group beyond the caller's rows.
    ``submit`` (optional) runs the member writes elsewhere, e.g. on a worker thread, one at a time.
    """

    def __init__(
        self,
        target: Path | BinaryIO,
        types: dict[str, str],
        *,
        group_rows: int = GROUP_ROWS,
        submit: Callable[..., None] | None = None,
    ):
        self.kinds = list(types.values())
        self.group_rows = max(1, int(group_rows))
        self._submit = submit or (lambda fn, *args: fn(*args))
        self._zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._pending: list[tuple[int, list[_Piece]]] = []
        self._buffered = 0
        self.rows = 0
        self.groups = 0

    def append(self, n: int, columns: list[Column]) -> None:
        """``n`` rows, one Column per schema column in order."""
        if len(columns) != len(self.kinds):
            raise ValueError(f"curated data: {len(columns)} columns given, the schema has {len(self.kinds)}")
        if n <= 0:
            return
        self._pending.append((n, [_ranked(c) if isinstance(c, Strings) else c for c in columns]))
        self._buffered += n
        while self._buffered >= self.group_rows:
            self._flush(self.group_rows)

    def close(self) -> dict[str, Any]:
        """Write what is buffered and the archive's directory; returns the schema's ``storage``."""
        if self._buffered:
            self._flush(self._buffered)
        self._submit(self._zip.close)
        return {
            "format": FORMAT,
            "version": VERSION,
            "rows": self.rows,
            "group_rows": self.group_rows,
            "groups": self.groups,
        }

    def abort(self) -> None:
        self._zip.close()

    def _take(self, k: int) -> list[list[_Piece]]:
        taken: list[list[_Piece]] = []
        need = k
        while need:
            n, columns = self._pending[0]
            if n <= need:
                taken.append(columns)
                self._pending.pop(0)
                need -= n
            else:
                taken.append([_head(c, need) for c in columns])
                self._pending[0] = (n - need, [_tail(c, need) for c in columns])
                need = 0
        self._buffered -= k
        return taken

    def _flush(self, k: int) -> None:
        members = encode_group(self.kinds, self._take(k), k)
        self._submit(self._write, self.groups, members)
        self.groups += 1
        self.rows += k

    def _write(self, group: int, members: dict[str, np.ndarray]) -> None:
        for part, array in members.items():
            info = zipfile.ZipInfo(f"g{group}.{part}.npy", date_time=_DATE_TIME)
            info.external_attr = 0o644 << 16
            with self._zip.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)


# -- reading ---------------------------------------------------------------------------------------


def _dictionaries(npz: Any, group: int) -> list[np.ndarray]:
    """One group's dictionaries (string columns in order), each an object array with a last slot
    for null (code -1)."""
    raw = npz[f"g{group}.dict"].tobytes()
    bounds = npz[f"g{group}.ends"].tolist()
    pairs = zip([0, *bounds], bounds, strict=False)
    text = raw.decode("utf-8")
    if len(text) == len(raw):  # ASCII: byte offsets are character offsets
        words = [text[a:b] for a, b in pairs]
    else:
        words = [raw[a:b].decode("utf-8") for a, b in pairs]
    out = []
    start = 0
    for size in npz[f"g{group}.sizes"].tolist():
        values = np.empty(size + 1, dtype=object)
        values[:size] = words[start : start + size]
        out.append(values)
        start += size
    return out


def _columns(npz: Any, groups: int, kinds: list[str]) -> list[list[np.ndarray]]:
    """Per column, its values per group (object arrays with None for null for strings)."""
    parts: list[list[np.ndarray]] = [[] for _ in kinds]
    for g in range(groups):
        rows = npz[f"g{g}.rows"]
        dictionaries = iter(_dictionaries(npz, g))
        for j, kind in enumerate(kinds):
            values = rows[f"c{j}"]
            parts[j].append(next(dictionaries)[values] if kind in _STRINGS else values)
    return parts


def _typed(kind: str, parts: list[np.ndarray]) -> Any:
    import pandas as pd

    if kind in _STRINGS:
        return pd.array(np.concatenate(parts) if parts else np.empty(0, dtype=object), dtype="string")
    if kind == "datetime":
        values = np.concatenate(parts) if parts else np.empty(0, dtype="datetime64[s]")
        return values.astype("datetime64[us]")
    values = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
    return pd.array(values, dtype="Int64") if kind == "int" else values.astype(np.float64)


def load(source: bytes | Path, schema: dict[str, Any]) -> pd.DataFrame:
    """The typed DataFrame of curated data (``data.npz`` bytes or path) described by ``schema``."""
    import pandas as pd

    storage = schema.get("storage") or {}
    if storage.get("format") != FORMAT or storage.get("version") != VERSION:
        raise ValueError(
            f"curated data: schema.json describes storage {storage.get('format')!r} "
            f"v{storage.get('version')}, this reader reads {FORMAT!r} v{VERSION}"
        )
    names = [c["name"] for c in schema["columns"]]
    kinds = [c["type"] for c in schema["columns"]]
    with np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False) as npz:
        parts = _columns(npz, int(storage["groups"]), kinds)
    df = pd.DataFrame(
        {name: _typed(kind, p) for name, kind, p in zip(names, kinds, parts, strict=True)}, columns=names
    )
    if len(df) != storage["rows"]:
        raise ValueError(f"curated data: {len(df)} rows read, schema.json says {storage['rows']}")
    return df


# -- a whole DataFrame -----------------------------------------------------------------------------


def frame_columns(df: pd.DataFrame, types: dict[str, str]) -> Iterator[Column]:
    """The columns of a DataFrame typed as ``load`` returns it, as ``CuratedWriter.append`` takes them."""
    import pandas as pd

    for name in df.columns:
        kind = types.get(name, "string")
        s = df[name]
        if kind in _NUMERIC:
            yield s.to_numpy(dtype=np.float64, na_value=np.nan)
        elif kind == "datetime":
            yield pd.to_datetime(s).astype("datetime64[us]").to_numpy().view(np.int64)
        else:
            codes, uniques = pd.factorize(s.astype("string"), use_na_sentinel=True)
            values = np.array([*(str(u) for u in uniques), ""], dtype=object)
            null = np.zeros(len(values), dtype=bool)
            null[-1] = True
            yield Strings(np.where(codes < 0, len(values) - 1, codes), values, null)


def to_bytes(
    df: pd.DataFrame, types: dict[str, str], *, group_rows: int = GROUP_ROWS
) -> tuple[bytes, dict[str, Any]]:
    """(``data.npz`` bytes, schema) of a whole DataFrame; columns missing from ``types`` are strings."""
    kinds = {c: types.get(c, "string") for c in df.columns}
    buf = io.BytesIO()
    writer = CuratedWriter(buf, kinds, group_rows=group_rows)
    writer.append(len(df), list(frame_columns(df, kinds)))
    storage = writer.close()
    return buf.getvalue(), schema_of(kinds, storage)


def schema_of(types: dict[str, str], storage: dict[str, Any]) -> dict[str, Any]:
    return {"columns": [{"name": n, "type": t} for n, t in types.items()], "storage": storage}


def write_curated(
    bucket: str, data_key: str, schema_key: str, df: pd.DataFrame, types: dict[str, str]
) -> None:
    body, schema = to_bytes(df, types)
    put_bytes(bucket, data_key, body, CONTENT_TYPE)
    put_json(bucket, schema_key, schema)


def read_curated(bucket: str, data_key: str, schema_key: str) -> pd.DataFrame:
    schema = json.loads(get_object(bucket, schema_key).body)
    return load(get_object(bucket, data_key).body, schema)
