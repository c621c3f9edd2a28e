"""sluice.rules: each rule on small frames, nulls never failing, uniqueness across chunks, and the
built-in specs' rules on the real files (typed with plain pandas, not with the ingest engine)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sluice.rules import RuleState, evaluate_rules
from sluice.specs import DatasetSpec, load_dataset_spec, parse_dataset_spec
from tests.events import DATA
from tests.unit.test_specs import DATA_FILES, typed_frame


def spec_of(*columns: dict) -> DatasetSpec:
    return parse_dataset_spec({"name": "demo", "columns": list(columns)})


def run(frame: pd.DataFrame, spec: DatasetSpec, state: RuleState | None = None) -> dict[str, list[bool]]:
    masks = evaluate_rules(frame, spec, state or RuleState(spec))
    for mask in masks.values():
        assert mask.dtype == bool
        assert mask.index.equals(frame.index)
    return {code: mask.tolist() for code, mask in masks.items()}


# -- min / max ----------------------------------------------------------------------------------------


def test_min_and_max_on_floats():
    spec = spec_of({"name": "x", "type": "float", "rules": {"min": 0, "max": 10}})
    frame = pd.DataFrame({"x": [-0.5, 0.0, 10.0, 10.01, np.nan, 5.0]})
    assert run(frame, spec) == {
        "x:below_min": [True, False, False, False, False, False],
        "x:above_max": [False, False, False, True, False, False],
    }


def test_min_and_max_on_nullable_ints():
    spec = spec_of(
        {"name": "n", "type": "int", "rules": {"min": 1}}, {"name": "m", "type": "int", "rules": {"max": 1}}
    )
    frame = pd.DataFrame(
        {"n": pd.array([0, None, 1, 2], dtype="Int64"), "m": pd.array([2, 1, None, 0], dtype="Int64")}
    )
    assert run(frame, spec) == {
        "n:below_min": [True, False, False, False],
        "m:above_max": [True, False, False, False],
    }


def test_numbers_of_an_unexpected_dtype_are_coerced():
    spec = spec_of({"name": "x", "type": "float", "rules": {"min": 0}})
    frame = pd.DataFrame({"x": pd.Series(["-1", " 3 ", None, "abc"], dtype="object")})
    assert run(frame, spec) == {"x:below_min": [True, False, False, False]}


# -- allowed / regex ----------------------------------------------------------------------------------


def test_allowed_is_case_sensitive_after_strip():
    spec = spec_of({"name": "churn", "rules": {"allowed": ["Yes", " No"]}})
    frame = pd.DataFrame({"churn": ["Yes", " No ", "yes", "Maybe", None, ""]})
    # "" is a value here (ingest turns empty strings into nulls before the rules run)
    assert run(frame, spec) == {"churn:not_allowed": [False, False, True, True, False, True]}


def test_regex_must_match_the_whole_value():
    spec = spec_of({"name": "id", "type": "text", "rules": {"regex": r"\d{4}-[A-Z]{5}"}})
    frame = pd.DataFrame(
        {"id": ["7590-VHVEG", "7590-VHVEGX", "x7590-VHVEG", " 5575-GNVDE ", None, "7590-vhveg"]}
    )
    assert run(frame, spec) == {"id:regex": [False, True, True, False, False, True]}


def test_allowed_and_regex_on_string_dtypes():
    spec = spec_of({"name": "s", "rules": {"allowed": ["ab", "cd"], "regex": "[a-c]+"}})
    for dtype in ("object", "string", "str"):
        frame = pd.DataFrame({"s": pd.Series(["ab", "cd", None, "abc"], dtype=dtype)})
        assert run(frame, spec) == {
            "s:not_allowed": [False, False, False, True],
            "s:regex": [False, True, False, False],
        }, dtype


def test_masks_are_positional_even_with_a_repeated_index_label():
    spec = spec_of(
        {"name": "s", "rules": {"allowed": ["a"], "regex": "a", "unique": True}},
        {"name": "x", "type": "float", "rules": {"max": 1}},
    )
    frame = pd.DataFrame({"s": [" a", "b", "a", None], "x": [0.0, 2.0, np.nan, 3.0]}, index=[5, 5, 6, 6])
    assert run(frame, spec) == {
        "x:above_max": [False, True, False, True],
        "s:not_allowed": [False, True, False, False],
        "s:regex": [False, True, False, False],
        "s:duplicate": [False, False, False, False],
    }


# -- uniqueness ---------------------------------------------------------------------------------------


def test_duplicates_within_a_chunk_keep_the_first_occurrence():
    spec = spec_of({"name": "id", "rules": {"unique": True}})
    frame = pd.DataFrame({"id": ["a", "b", "a", None, None, "a", "c"]}, index=[7, 3, 9, 1, 2, 8, 0])
    assert run(frame, spec) == {"id:duplicate": [False, False, True, False, False, True, False]}


def test_duplicates_across_chunks_through_the_state():
    spec = spec_of(
        {"name": "id", "rules": {"unique": True}}, {"name": "n", "type": "int", "rules": {"unique": True}}
    )
    state = RuleState(spec)
    first = pd.DataFrame({"id": ["a", "b", None], "n": pd.array([1, 2, None], dtype="Int64")})
    second = pd.DataFrame(
        {"id": ["c", "b", "c", None, "a"], "n": pd.array([3, 3, 1, None, 4], dtype="Int64")},
        index=range(3, 8),
    )
    assert run(first, spec, state) == {
        "id:duplicate": [False, False, False],
        "n:duplicate": [False, False, False],
    }
    assert run(second, spec, state) == {
        "id:duplicate": [False, True, True, False, True],
        "n:duplicate": [False, True, True, False, False],
    }
    assert state.seen_count("id") == 3 and state.seen_count("n") == 4
    third = pd.DataFrame({"id": ["d"], "n": pd.array([4], dtype="Int64")}, index=[8])
    assert run(third, spec, state) == {"id:duplicate": [False], "n:duplicate": [True]}


def test_duplicate_dates_across_chunks():
    spec = spec_of({"name": "date", "type": "datetime", "rules": {"unique": True}})
    state = RuleState(spec)
    days = pd.to_datetime(["1997-01-01", "1997-01-02", None, "1997-01-02"]).astype("datetime64[us]")
    assert run(pd.DataFrame({"date": days}), spec, state) == {"date:duplicate": [False, False, False, True]}
    later = pd.to_datetime(["1997-01-03", "1997-01-01"]).astype("datetime64[us]")
    assert run(pd.DataFrame({"date": later}, index=[4, 5]), spec, state) == {"date:duplicate": [False, True]}


def test_a_fresh_state_forgets_earlier_files():
    spec = spec_of({"name": "id", "rules": {"unique": True}})
    frame = pd.DataFrame({"id": ["a", "b"]})
    assert run(frame, spec, RuleState(spec)) == {"id:duplicate": [False, False]}
    assert run(frame, spec, RuleState(spec)) == {"id:duplicate": [False, False]}


# -- what is evaluated ----------------------------------------------------------------------------------


def test_absent_columns_and_columns_without_rules_are_skipped():
    spec = spec_of(
        {"name": "x", "type": "float", "rules": {"min": 0}},
        {"name": "absent", "rules": {"allowed": ["a"], "unique": True}},
        {"name": "plain"},
    )
    frame = pd.DataFrame({"x": [1.0, -1.0], "plain": ["p", "q"], "extra": ["e", "f"]})
    assert run(frame, spec) == {"x:below_min": [False, True]}


def test_every_configured_rule_has_a_mask_even_when_nothing_fails():
    spec = spec_of(
        {"name": "x", "type": "float", "rules": {"min": 0, "max": 1, "unique": True}},
        {"name": "s", "rules": {"allowed": ["a"], "regex": "a"}},
    )
    assert run(pd.DataFrame({"x": [0.5], "s": ["a"]}), spec) == {
        "x:below_min": [False],
        "x:above_max": [False],
        "x:duplicate": [False],
        "s:not_allowed": [False],
        "s:regex": [False],
    }
    assert run(pd.DataFrame({"x": pd.Series([], dtype=float), "s": pd.Series([], dtype=str)}), spec) == {
        "x:below_min": [],
        "x:above_max": [],
        "x:duplicate": [],
        "s:not_allowed": [],
        "s:regex": [],
    }


def test_all_null_rows_never_fail():
    spec = spec_of(
        {"name": "x", "type": "int", "rules": {"min": 5, "max": 6, "unique": True}},
        {"name": "s", "rules": {"allowed": ["a"], "regex": "a", "unique": True}},
        {"name": "d", "type": "datetime", "rules": {"unique": True}},
    )
    frame = pd.DataFrame(
        {
            "x": pd.array([None] * 3, dtype="Int64"),
            "s": pd.Series([None] * 3, dtype="str"),
            "d": pd.Series([pd.NaT] * 3, dtype="datetime64[us]"),
        }
    )
    masks = run(frame, spec)
    assert len(masks) == 7 and not any(any(m) for m in masks.values())


def test_uniqueness_over_many_large_chunks():
    spec = spec_of(
        {"name": "id", "rules": {"unique": True, "regex": r"[a-z]\d+"}},
        {"name": "x", "type": "float", "rules": {"min": 0, "max": 1}},
        {"name": "c", "rules": {"allowed": ["a", "b", "c"]}},
    )
    state = RuleState(spec)
    rng = np.random.default_rng(0)
    n, chunks = 100_000, 4
    duplicates = 0
    for k in range(chunks):
        frame = pd.DataFrame(
            {
                "id": pd.Series([f"k{i}" for i in range(k * n, (k + 1) * n)], dtype="str"),
                "x": rng.random(n),
                "c": pd.Series(rng.choice(["a", "b", "c", "d"], n), dtype="str"),
            },
            index=range(k * n, (k + 1) * n),
        )
        frame.loc[k * n, "id"] = "k0"  # one repeat of the very first id per chunk
        duplicates += int(evaluate_rules(frame, spec, state)["id:duplicate"].sum())
    assert duplicates == chunks - 1


# -- the real files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", sorted(DATA_FILES))
def test_builtin_rules_pass_on_the_real_files(relpath):
    """Every real file passes its spec's rules, evaluated in chunks through one RuleState."""
    spec = load_dataset_spec(DATA_FILES[relpath][0])
    typed, _ = typed_frame(DATA / relpath, spec)
    state = RuleState(spec)
    failures: dict[str, int] = {}
    for start in range(0, len(typed), 1000):
        for code, mask in evaluate_rules(typed.iloc[start : start + 1000], spec, state).items():
            failures[code] = failures.get(code, 0) + int(mask.sum())
    assert not any(failures.values()), {c: n for c, n in failures.items() if n}
    if spec.name != "transactions":  # a generic spec for any bank export: no value rules
        assert failures


def test_real_churn_ids_are_unique_and_a_repeated_id_in_a_later_chunk_is_caught():
    spec = load_dataset_spec("churn")
    typed, _ = typed_frame(DATA / "churn" / "telco_customer_churn_ibm.csv", spec)
    assert typed["customer_id"].is_unique and len(typed) == 7043
    assert typed["total_charges"].isna().sum() == 11
    state = RuleState(spec)
    evaluate_rules(typed, spec, state)
    again = typed.iloc[[5, 6]].copy()
    again.index = [7043, 7044]
    again.loc[7044, "customer_id"] = "0000-NEWID"
    again.loc[7043, "churn"] = "maybe"
    masks = evaluate_rules(again, spec, state)
    assert masks["customer_id:duplicate"].tolist() == [True, False]
    assert masks["churn:not_allowed"].tolist() == [True, False]
    assert state.seen_count("customer_id") == 7044


def test_real_wine_quality_is_within_0_to_10():
    spec = load_dataset_spec("wine-quality")
    typed, _ = typed_frame(DATA / "tabular" / "winequality-red.csv", spec)
    assert len(typed) == 1599 and typed["quality"].between(0, 10).all()
    typed.loc[0, "quality"] = 11
    typed.loc[1, "ph"] = -0.1
    masks = evaluate_rules(typed, spec, RuleState(spec))
    assert masks["quality:above_max"].sum() == 1 and masks["quality:above_max"].iloc[0]
    assert masks["ph:below_min"].sum() == 1 and masks["ph:below_min"].iloc[1]
