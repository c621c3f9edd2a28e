"""Vectorised evaluation of the validation rules of a dataset spec on typed columns.

Ingest types each column first (``float``/``int`` to numbers, ``datetime`` to timestamps, strings
stripped, empty values null), then calls ``evaluate_rules`` once per chunk of the file with one
``RuleState`` for the whole file. Each rule yields a boolean mask of the rows failing it, keyed by the
reason code written to quarantine:

- ``<column>:below_min`` / ``<column>:above_max``: a number outside ``rules.min`` / ``rules.max``;
- ``<column>:not_allowed``: a string (stripped, case-sensitive) not in ``rules.allowed``;
- ``<column>:regex``: a string (stripped) that does not ``re.fullmatch`` ``rules.regex``;
- ``<column>:duplicate``: a value already seen in this chunk or in an earlier chunk of the file
  (the first occurrence stays clean, every later one fails).

Null values never fail a rule (nullability is ingest's check). Columns of the spec absent from the
frame are skipped. Every configured rule of a present column gets a mask, all False when no row fails.
The spec validator only allows min/max on float/int columns and allowed/regex on string/text columns;
values of an unexpected dtype are coerced, and a value that cannot be coerced never fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sluice.specs import DatasetSpec, RuleSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RuleState", "evaluate_rules"]

_NO_RULES = RuleSpec()


class RuleState:
    """What one file's earlier chunks leave for the next: the distinct values of ``unique`` columns."""

    def __init__(self, spec: DatasetSpec):
        self.spec = spec
        self._seen: dict[str, pd.Index | None] = {c.name: None for c in spec.columns if c.rules.unique}

    def seen_count(self, column: str) -> int:
        """Distinct non-null values of a ``unique`` column seen so far."""
        seen = self._seen.get(column)
        return 0 if seen is None else len(seen)

    def duplicates(self, column: str, values: pd.Series) -> pd.Series:
        """Rows whose value occurred earlier in ``values`` or in an earlier chunk; records the new ones."""
        import pandas as pd

        present = values.notna().to_numpy(dtype=bool)
        mask = values.duplicated(keep="first").to_numpy(dtype=bool) & present
        seen = self._seen.get(column)
        if seen is not None and len(seen):
            mask |= values.isin(seen).to_numpy(dtype=bool) & present
        new = pd.Index(values[present & ~mask])
        self._seen[column] = new if seen is None else seen.append(new)
        return pd.Series(mask, index=values.index)


def _bool(mask: pd.Series, present: pd.Series) -> pd.Series:
    """A nullable comparison result -> plain bool, False where the value is null."""
    return mask.fillna(False).astype(bool) & present


def _numbers(values: pd.Series) -> pd.Series:
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_numeric_dtype(values.dtype) and not is_bool_dtype(values.dtype):
        return values
    if is_bool_dtype(values.dtype):
        return values.astype("Int64")
    return pd.to_numeric(values.astype("string").str.strip(), errors="coerce")


def _strings(values: pd.Series) -> pd.Series:
    import pandas as pd

    return values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")


def _passes(strings: pd.Series, present: pd.Series, test: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``test`` on the values as given, and again stripped for the present ones that failed: ingest
    has usually stripped them already, so the second pass rarely has work to do."""
    import pandas as pd

    ok = test(strings).fillna(False).to_numpy(dtype=bool, copy=True)
    retry = present.to_numpy(dtype=bool) & ~ok
    if retry.any():
        ok[retry] = test(strings[retry].str.strip()).fillna(False).to_numpy(dtype=bool)
    return pd.Series(ok, index=strings.index)


def evaluate_rules(typed: pd.DataFrame, spec: DatasetSpec, state: RuleState) -> dict[str, pd.Series]:
    """Reason code -> boolean mask (index aligned with ``typed``) of the rows failing that rule."""
    out: dict[str, pd.Series] = {}
    for col in spec.columns:
        rules = col.rules
        if col.name not in typed.columns or rules == _NO_RULES:
            continue
        values = typed[col.name]
        present = values.notna().astype(bool)
        if rules.min is not None or rules.max is not None:
            numbers = _numbers(values)
            if rules.min is not None:
                out[f"{col.name}:below_min"] = _bool(numbers < rules.min, present)
            if rules.max is not None:
                out[f"{col.name}:above_max"] = _bool(numbers > rules.max, present)
        if rules.allowed is not None or rules.regex:
            strings = _strings(values)
            if rules.allowed is not None:
                allowed = sorted({a.strip() for a in rules.allowed})
                ok = _passes(strings, present, lambda s, a=allowed: s.isin(a))
                out[f"{col.name}:not_allowed"] = ~ok & present
            if rules.regex:
                regex = rules.regex
                ok = _passes(strings, present, lambda s, r=regex: s.str.fullmatch(r))
                out[f"{col.name}:regex"] = ~ok & present
        if rules.unique:
            out[f"{col.name}:duplicate"] = state.duplicates(col.name, values)
    return out
