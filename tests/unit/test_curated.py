"""sluice.curated: the typed curated format round-trips what ingest produced, and the same rows give
the same bytes however they were appended."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from sluice.curated import CuratedWriter, frame_columns, load, to_bytes
from sluice.ingest import ingest_bytes
from sluice.specs import load_dataset_spec
from tests.events import DATA

HOUSEHOLD = DATA / "transactions" / "daily_household_transactions.csv"
TITANS = DATA / "transactions" / "titans_all_transactions.csv"
CHURN = DATA / "churn" / "telco_customer_churn_ibm.csv"


@pytest.fixture(scope="module")
def household():
    return ingest_bytes(HOUSEHOLD.read_bytes(), load_dataset_spec("transactions"))


@pytest.mark.parametrize(
    ("path", "dataset"), [(TITANS, "transactions"), (CHURN, "churn")], ids=["titans", "churn"]
)
@pytest.mark.parametrize("group_rows", [13, 1000, 1 << 20])
def test_round_trip_keeps_values_types_and_nulls(path, dataset, group_rows):
    outcome = ingest_bytes(path.read_bytes(), load_dataset_spec(dataset))
    df = outcome.clean
    body, schema = to_bytes(df, outcome.types, group_rows=group_rows)
    assert schema["storage"]["groups"] == -(-len(df) // group_rows)
    back = load(body, json.loads(json.dumps(schema)))
    pd.testing.assert_frame_equal(back, df, check_exact=True)


def test_non_ascii_and_multi_line_strings_round_trip(household):
    df = household.clean.copy()
    text = df["description"].astype(object)
    text[::3] = [f"{v} \u2013 café \u2116 {i}" for i, v in enumerate(text[::3])]
    text[1::7] = [f'{v}\nsecond line, "quoted"' for v in text[1::7]]
    df["description"] = pd.array(text, dtype="string")
    body, schema = to_bytes(df, household.types, group_rows=300)
    pd.testing.assert_frame_equal(load(body, schema), df, check_exact=True)


def test_the_same_rows_give_the_same_bytes_however_they_are_appended(household):
    df, types = household.clean, household.types
    whole, _ = to_bytes(df, types, group_rows=500)
    for step in (7, 333, 1000):
        buf = io.BytesIO()
        writer = CuratedWriter(buf, types, group_rows=500)
        for start in range(0, len(df), step):
            part = df.iloc[start : start + step]
            writer.append(len(part), list(frame_columns(part, types)))
        writer.close()
        assert buf.getvalue() == whole


def test_an_empty_frame_keeps_its_column_types(household):
    df = household.clean.iloc[:0].reset_index(drop=True)
    body, schema = to_bytes(df, household.types)
    assert schema["storage"]["rows"] == 0
    pd.testing.assert_frame_equal(load(body, schema), df)


def test_the_archive_is_plain_numpy(household):
    body, _ = to_bytes(household.clean, household.types, group_rows=1000)
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        rows = npz["g0.rows"]
        assert len(rows) == 1000 and rows.dtype["c0"] == np.dtype("datetime64[s]")
        assert rows["c1"].tolist() == household.clean["amount"][:1000].tolist()
        assert sorted(npz.files)[:4] == ["g0.dict", "g0.ends", "g0.rows", "g0.sizes"]


def test_a_schema_without_this_storage_is_refused(household):
    body, schema = to_bytes(household.clean, household.types)
    with pytest.raises(ValueError, match="sluice-npz"):
        load(body, {"columns": schema["columns"]})
