"""Per-column statistics of curated data (``profile.json``): what monitoring later compares against.

Built incrementally, chunk by chunk, in memory bounded by the column count (not the row count), and
**independent of the chunk size**: ingesting a file in one chunk or in many gives the same profile
(up to floating-point summation order in mean/std).

- **numeric** (float, int): count, nulls, min, max, mean, std (Chan's parallel merge), quantiles
  (1, 5, 25, 50, 75, 95, 99 %) and a histogram of ``bins`` equal-width bins between a robust min and
  max, plus the counts ``below`` and ``above`` it. The bin edges are fixed from the first
  ``warmup_rows`` rows (their 1st and 99th percentiles; min/max when those coincide) - the values of
  those rows are buffered until then, so the edges do not depend on how the file was chunked - or
  taken from a ``reference`` profile, so that two profiles can be compared bin by bin.
  Quantiles come from a bottom-k sample: every row gets a pseudo-random priority from a hash of its
  row number and the ``sample_size`` rows of lowest priority are kept. Exact while the file has at
  most ``sample_size`` rows; deterministic and chunk-size independent always.
- **categorical** (string): count, nulls, distinct, the ``top_k`` most frequent values with their
  counts, and ``other`` (rows outside the top). Exact counts are kept for up to ``max_tracked``
  distinct values (admitted in order of first appearance); beyond, ``distinct`` is a HyperLogLog
  estimate (``distinct_exact: false``) and ``top_exact`` turns false.
- **datetime**: count, nulls, min, max and the row count per calendar month (``YYYY-MM``).
- **text**: count, nulls and the numeric profile of the values' lengths (characters).

numpy only at run time (pandas for hashing strings, only once a column exceeds ``max_tracked``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PROFILE_VERSION = 1
KINDS = {
    "float": "numeric",
    "int": "numeric",
    "datetime": "datetime",
    "string": "categorical",
    "text": "text",
}
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
NAT = np.iinfo(np.int64).min


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of row numbers (the sampling priorities)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class _HyperLogLog:
    """Distinct-count estimate of a set of strings (2^12 registers, ~1.6 % standard error)."""

    P = 12

    def __init__(self) -> None:
        self.registers = np.zeros(1 << self.P, dtype=np.uint8)

    def add(self, values: list[str]) -> None:
        if not values:
            return
        import pandas as pd

        h = pd.util.hash_array(np.asarray(values, dtype=object))
        idx = (h >> np.uint64(64 - self.P)).astype(np.int64)
        w = (h << np.uint64(self.P)) | np.uint64(1 << (self.P - 1))
        msb = np.zeros(len(w), dtype=np.int64)
        for shift in (32, 16, 8, 4, 2, 1):
            big = w >= (np.uint64(1) << np.uint64(shift))
            msb += big * shift
            w = np.where(big, w >> np.uint64(shift), w)
        np.maximum.at(self.registers, idx, (64 - msb).astype(np.uint8))

    def estimate(self) -> int:
        m = len(self.registers)
        alpha = 0.7213 / (1 + 1.079 / m)
        e = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if e <= 2.5 * m and zeros:
            e = m * math.log(m / zeros)
        return round(e)


class _Numeric:
    def __init__(self, bins: int, edges: list[float] | None):
        self.bins = bins
        self.count = self.nulls = 0
        self.min = math.inf
        self.max = -math.inf
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.edges = np.asarray(edges, dtype=np.float64) if edges else None
        self.edges_from = "reference profile" if edges else ""
        self.counts = np.zeros(len(edges) - 1 if edges else bins, dtype=np.int64)
        self.below = self.above = 0
        self.head: list[np.ndarray] = []  # values of the warm-up rows, until the edges are fixed
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # (values, counts) not yet binned

    def update(self, data: Coded, head: int) -> None:
        """One chunk; ``head``: how many of its first rows fall in the warm-up rows."""
        v, w = data.weighted()
        null = np.isnan(v)
        self.nulls += int(w[null].sum())
        v, w = v[~null], w[~null]
        n_b = int(w.sum())
        self.count += n_b
        if n_b:
            self.min = min(self.min, float(v.min()))
            self.max = max(self.max, float(v.max()))
            mean_b = float(np.dot(v, w) / n_b)
            m2_b = float(np.dot(np.square(v - mean_b), w))
            total = self.n + n_b
            delta = mean_b - self.mean
            self.mean += delta * n_b / total
            self.m2 += m2_b + delta * delta * self.n * n_b / total
            self.n = total
        if self.edges is None:
            if head:
                self.head.append(data.rows(slice(0, head)))
            self.pending.append((v, w))
        else:
            self._count(v, w)

    def _count(self, v: np.ndarray, w: np.ndarray) -> None:
        assert self.edges is not None
        lo, hi = self.edges[0], self.edges[-1]
        self.below += int(w[v < lo].sum())
        self.above += int(w[v > hi].sum())
        inside = (v >= lo) & (v <= hi)
        self.counts += np.histogram(v[inside], bins=self.edges, weights=w[inside])[0].round().astype(np.int64)

    def fix_edges(self) -> None:
        if self.edges is not None:
            return
        head = np.concatenate(self.head) if self.head else np.empty(0)
        rows = len(head)
        head = head[~np.isnan(head)]
        if len(head):
            lo, hi = (float(x) for x in np.quantile(head, [0.01, 0.99]))
            if hi <= lo:
                lo, hi = float(head.min()), float(head.max())
            if hi <= lo:
                lo, hi = lo - 0.5, hi + 0.5
            self.edges_from = f"1st-99th percentile of the first {rows} rows"
        else:
            lo, hi = 0.0, 1.0
            self.edges_from = "no value in the first rows: [0, 1]"
        self.edges = np.linspace(lo, hi, self.bins + 1)
        for v, w in self.pending:
            self._count(v, w)
        self.head, self.pending = [], []

    def result(self, sample: np.ndarray | None) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "nulls": self.nulls}
        if self.count:
            std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
            out.update(min=_float(self.min), max=_float(self.max), mean=_float(self.mean), std=_float(std))
        else:
            out.update(min=None, max=None, mean=None, std=None)
        values = sample[~np.isnan(sample)] if sample is not None else np.empty(0)
        out["quantiles"] = (
            {f"{q:g}": _float(x) for q, x in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)}
            if len(values)
            else {}
        )
        assert self.edges is not None
        out["histogram"] = {
            "edges": [float(e) for e in self.edges],
            "counts": [int(c) for c in self.counts],
            "below": self.below,
            "above": self.above,
            "edges_from": self.edges_from,
        }
        return out


class _Datetime:
    def __init__(self) -> None:
        self.count = self.nulls = 0
        self.min: int | None = None
        self.max: int | None = None
        self.months: dict[int, int] = {}

    def update(self, data: Coded) -> None:
        us, w = data.weighted()
        null = us == NAT
        self.nulls += int(w[null].sum())
        v, w = us[~null], w[~null]
        self.count += int(w.sum())
        if not len(v):
            return
        lo, hi = int(v.min()), int(v.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        months = v.view("datetime64[us]").astype("datetime64[M]").astype(np.int64)
        distinct, inverse = np.unique(months, return_inverse=True)
        counts = np.bincount(inverse, weights=w).round().astype(np.int64)
        for m, c in zip(distinct.tolist(), counts.tolist(), strict=True):
            self.months[m] = self.months.get(m, 0) + c

    def result(self) -> dict[str, Any]:
        def iso(us: int | None) -> str | None:
            return None if us is None else str(np.datetime64(us, "us").astype("datetime64[s]"))

        months = {str(np.datetime64(m, "M")): c for m, c in sorted(self.months.items())}
        return {
            "count": self.count,
            "nulls": self.nulls,
            "min": iso(self.min),
            "max": iso(self.max),
            "months": months,
        }


class _Categorical:
    def __init__(self, top_k: int, max_tracked: int):
        self.top_k = top_k
        self.max_tracked = max_tracked
        self.count = self.nulls = 0
        self.tracked: dict[str, int] = {}
        self.untracked = 0
        self.hll: _HyperLogLog | None = None

    def update(self, codes: np.ndarray, values: list[str], null: np.ndarray) -> None:
        counts = np.bincount(codes, minlength=len(values)) if len(codes) else np.zeros(len(values), np.int64)
        seen = np.flatnonzero(counts)
        self.nulls += int(counts[null].sum())
        present = seen[~null[seen]]
        self.count += int(counts[present].sum())
        tally = counts.tolist()
        tracked = self.tracked
        new: list[int] = []
        for i in present.tolist():
            v = values[i]
            if v in tracked:
                tracked[v] += tally[i]
            else:
                new.append(i)
        if len(self.tracked) + len(new) > self.max_tracked:
            # admit in order of first appearance in the rows, so the result does not depend on chunking
            distinct, first = np.unique(codes, return_index=True)
            first_row = np.full(len(values), len(codes))
            first_row[distinct] = first
            new.sort(key=lambda i: first_row[i])
        for i in new:
            v, c = values[i], tally[i]
            if v in self.tracked:
                self.tracked[v] += c
            elif len(self.tracked) < self.max_tracked:
                self.tracked[v] = c
            else:
                self.untracked += c
                if self.hll is None:
                    self.hll = _HyperLogLog()
                    self.hll.add(list(self.tracked))
        if self.hll is not None:
            self.hll.add([values[i] for i in present.tolist()])

    def result(self) -> dict[str, Any]:
        top = sorted(self.tracked.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_k]
        exact = self.hll is None
        return {
            "count": self.count,
            "nulls": self.nulls,
            "distinct": len(self.tracked) if exact else max(len(self.tracked), self.hll.estimate()),
            "distinct_exact": exact,
            "top": [{"value": v, "count": c} for v, c in top],
            "other": self.count - sum(c for _, c in top),
            "top_exact": exact,
        }


@dataclass
class Coded:
    """Row values given as ``values[codes]`` (distinct values and row codes), or plain row values
    (``codes`` None). Statistics are computed per distinct value, weighted by its row count."""

    values: np.ndarray
    codes: np.ndarray | None = None

    def rows(self, index: np.ndarray | slice | None = None) -> np.ndarray:
        if self.codes is None:
            return self.values if index is None else self.values[index]
        return self.values[self.codes if index is None else self.codes[index]]

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct values present, their row counts)."""
        if self.codes is None:
            return self.values, np.ones(len(self.values), dtype=np.int64)
        counts = np.bincount(self.codes, minlength=len(self.values))
        present = counts > 0
        return self.values[present], counts[present]

    def __len__(self) -> int:
        return len(self.values) if self.codes is None else len(self.codes)


@dataclass
class Categories:
    """A categorical chunk: row codes into distinct stripped values, and which of those are null."""

    codes: np.ndarray
    values: list[str]
    null: np.ndarray


def _as_coded(data: Any) -> Coded:
    if isinstance(data, Coded):
        return data
    if isinstance(data, tuple):  # text: (lengths, null)
        lengths, null = data
        return Coded(np.where(null, np.nan, np.asarray(lengths, dtype=np.float64)))
    values = np.asarray(data)
    return Coded(values if values.dtype.kind in "fi" else values.astype(np.float64))


class Profiler:
    """Accumulates the profile of a table chunk by chunk; ``result()`` is the profile.json document.

    ``types`` maps each column to its curated type (float, int, datetime, string, text).
    ``update(n, columns)`` takes one chunk of ``n`` rows: per column the float64 values (NaN = null)
    of numeric columns, int64 microseconds (NaT = int64 min) of datetimes, the lengths of text values
    (NaN = null) - each as a plain array or as ``Coded`` (distinct values + row codes, the cheap
    form) -, and ``Categories`` for strings. Text may also come as ``(lengths, null mask)``.
    """

    def __init__(
        self,
        types: dict[str, str],
        *,
        bins: int = 20,
        top_k: int = 20,
        sample_size: int = 20_000,
        warmup_rows: int = 10_000,
        max_tracked: int = 10_000,
        reference: dict[str, Any] | None = None,
    ):
        self.types = dict(types)
        self.sample_size = sample_size
        self.warmup_rows = warmup_rows
        self.rows = 0
        self.settings = {
            "bins": bins,
            "top_k": top_k,
            "sample_size": sample_size,
            "warmup_rows": warmup_rows,
            "max_tracked": max_tracked,
        }
        ref = (reference or {}).get("columns", {})
        self.columns: dict[str, Any] = {}
        for name, kind in self.types.items():
            k = KINDS[kind]
            edges = ref.get(name, {}).get("histogram", {}).get("edges") if k == "numeric" else None
            if k == "text":
                edges = ref.get(name, {}).get("length", {}).get("histogram", {}).get("edges")
            if k in ("numeric", "text"):
                self.columns[name] = _Numeric(bins, edges)
            elif k == "datetime":
                self.columns[name] = _Datetime()
            else:
                self.columns[name] = _Categorical(top_k, max_tracked)
        self._sampled = [n for n, kind in self.types.items() if KINDS[kind] in ("numeric", "text")]
        self._prio = np.empty(0, dtype=np.uint64)
        self._sample = {name: np.empty(0) for name in self._sampled}
        self._edges_fixed = False

    def update(self, n: int, columns: dict[str, Any]) -> None:
        head = max(0, min(n, self.warmup_rows - self.rows))
        for name, data in columns.items():
            kind = KINDS[self.types[name]]
            acc = self.columns[name]
            if kind in ("numeric", "text"):
                acc.update(_as_coded(data), head)
            elif kind == "datetime":
                acc.update(_as_coded(data))
            else:
                acc.update(data.codes, data.values, data.null)
        self._sample_rows(n, {name: _as_coded(columns[name]) for name in self._sampled if name in columns})
        self.rows += n
        if not self._edges_fixed and self.rows >= self.warmup_rows:
            self._fix_edges()

    def _sample_rows(self, n: int, numeric: dict[str, Coded]) -> None:
        if not self._sampled or not n:
            return
        prio = _splitmix64(np.arange(self.rows, self.rows + n, dtype=np.uint64))
        full = len(self._prio) >= self.sample_size
        if full:
            pick = np.flatnonzero(prio < self._prio.max())
            if not len(pick):
                return
        else:
            pick = np.arange(n)
        all_prio = np.concatenate([self._prio, prio[pick]])
        merged = {
            name: np.concatenate(
                [
                    self._sample[name],
                    numeric[name].rows(pick) if name in numeric else np.full(len(pick), np.nan),
                ]
            )
            for name in self._sampled
        }
        if len(all_prio) > self.sample_size:
            keep = np.argpartition(all_prio, self.sample_size - 1)[: self.sample_size]
            all_prio = all_prio[keep]
            merged = {name: v[keep] for name, v in merged.items()}
        self._prio = all_prio
        self._sample = merged

    def _fix_edges(self) -> None:
        for name in self._sampled:
            self.columns[name].fix_edges()
        self._edges_fixed = True

    def result(self) -> dict[str, Any]:
        if not self._edges_fixed:
            self._fix_edges()
        columns: dict[str, Any] = {}
        for name, kind in self.types.items():
            k = KINDS[kind]
            acc = self.columns[name]
            if k == "numeric":
                body = acc.result(self._sample.get(name))
            elif k == "text":
                lengths = acc.result(self._sample.get(name))
                body = {"count": lengths.pop("count"), "nulls": lengths.pop("nulls"), "length": lengths}
            else:
                body = acc.result()
            columns[name] = {"type": kind, "kind": k, **body}
        return {
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "quantiles_exact": self.rows <= self.sample_size,
            "settings": self.settings,
            "columns": columns,
        }


def profile_frame(df: pd.DataFrame, types: dict[str, str], **settings: Any) -> dict[str, Any]:
    """The profile of a whole DataFrame (typed as ``read_curated`` returns it) in one update."""
    import pandas as pd

    profiler = Profiler({c: types.get(c, "string") for c in df.columns}, **settings)
    columns: dict[str, Any] = {}
    for name, kind in profiler.types.items():
        s = df[name]
        k = KINDS[kind]
        if k == "numeric":
            columns[name] = s.astype("float64").to_numpy(na_value=np.nan)
        elif k == "datetime":
            columns[name] = pd.to_datetime(s).astype("datetime64[us]").to_numpy().view(np.int64)
        else:
            strings = s.astype("string").str.strip()
            null = strings.isna() | (strings == "")
            if k == "text":
                columns[name] = (
                    strings.str.len().fillna(0).to_numpy(dtype=np.int64),
                    null.to_numpy(dtype=bool),
                )
            else:
                codes, uniques = pd.factorize(strings.fillna(""))
                values = [str(u) for u in uniques]
                columns[name] = Categories(codes, values, np.array([not v for v in values], dtype=bool))
    profiler.update(len(df), columns)
    return profiler.result()
