import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from llmrec.data.contract import ContractError, check_interactions, check_items
from llmrec.data.readers import read_table

CSV = """user_id,item_id,timestamp,event,value,query
u1,i1,100,rating,4,
u1,i2,200,click,1,cheap phones
,i1,300,rating,3,
u2,,300,rating,3,
u2,i1,yesterday,rating,3,
u2,i1,-5,rating,3,
u2,i9,400,rating,3,
u2,i2,500,rating,five,
u1,i1,100,rating,4,
u3,i2,600,purchase,1.5,
"""


def test_bad_rows_are_counted_per_reason_and_kept_aside(tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text(CSV)
    checked = check_interactions(read_table(str(path)), str(path), item_ids={"i1", "i2"})
    assert checked.table.num_rows == 3
    assert checked.table.schema.field("timestamp").type == pa.int64()
    assert checked.table.schema.field("value").type == pa.float32()
    assert checked.counts() == {
        "null_user_id": 1,
        "null_item_id": 1,
        "bad_timestamp": 2,
        "unknown_item": 1,
        "bad_value": 1,
        "duplicate": 1,
    }
    assert checked.table.column("query").to_pylist() == [None, "cheap phones", None]
    bad_ts = checked.rejected[checked.rejected["rejected_reason"] == "bad_timestamp"]
    assert sorted(bad_ts["timestamp"]) == ["-5", "yesterday"]


def test_optional_columns_get_defaults():
    table = pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [5]})
    out = check_interactions(table, "t.parquet").table.to_pylist()
    assert out == [
        {
            "user_id": "u",
            "item_id": "i",
            "timestamp": 5,
            "event": "interaction",
            "value": 1.0,
            "query": None,
        }
    ]


def test_missing_column_names_file_column_and_types(tmp_path):
    path = tmp_path / "logs.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"]}), path)
    with pytest.raises(ContractError) as err:
        check_interactions(read_table(str(path)), str(path))
    assert str(err.value) == f"{path}: column 'timestamp' expected int64, found no such column"


def test_mistyped_parquet_column_stops(tmp_path):
    path = tmp_path / "logs.parquet"
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "timestamp": [1.5]}), path)
    with pytest.raises(
        ContractError,
        match=r"column 'timestamp' expected int64 unix seconds "
        r"\(or timestamp\), found double",
    ):
        check_interactions(read_table(str(path)), str(path))


def test_integer_ids_and_timestamp_types_are_accepted():
    table = pa.table(
        {
            "user_id": pa.array([1, 2], pa.int32()),
            "item_id": pa.array([10, 20], pa.int64()),
            "timestamp": pa.array([0, 86_400_000_000], pa.timestamp("us")),
        }
    )
    out = check_interactions(table, "t").table
    assert out.column("user_id").to_pylist() == ["1", "2"]
    assert out.column("timestamp").to_pylist() == [0, 86_400]


def test_items_categories_from_pipe_string_and_bad_rows(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,title,categories,price\ni1,Phone,Tech|Mobile,10\ni2,,Tech,3\n"
        "i1,Again,Tech,4\n,Nameless,,5\n"
    )
    checked = check_items(read_table(str(path)), str(path))
    rows = checked.table.to_pylist()
    assert rows == [
        {
            "item_id": "i1",
            "title": "Phone",
            "text": None,
            "categories": ["Tech", "Mobile"],
            "price": 10,
        }
    ]
    assert checked.counts() == {"null_title": 1, "duplicate_item_id": 1, "null_item_id": 1}


def test_a_timestamp_beyond_int64_is_rejected_not_wrapped():
    table = pa.table(
        {
            "user_id": ["u", "u", "u"],
            "item_id": ["i1", "i2", "i3"],
            "timestamp": ["99999999999999999999", "1700000000", "1.7e9"],
        }
    )
    checked = check_interactions(table, "log.csv")
    assert checked.table.column("timestamp").to_pylist() == [1_700_000_000, 1_700_000_000]
    assert checked.counts() == {"bad_timestamp": 1}
    assert min(checked.table.column("timestamp").to_pylist()) >= 0


def test_millisecond_timestamps_become_seconds_with_a_note():
    ms = [1_700_000_000_123, 1_700_000_001_999, 1_700_000_002_000, 1_700_000_003]
    table = pa.table({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "timestamp": ms})
    checked = check_interactions(table, "clicks.parquet")
    assert checked.table.column("timestamp").to_pylist() == [
        1_700_000_000,
        1_700_000_001,
        1_700_000_002,
    ]
    # a seconds value among milliseconds is not silently read as 1970
    assert checked.counts() == {"timestamp_unit_mismatch": 1}
    (note,) = checked.notes
    assert note.startswith("clicks.parquet: timestamps are in milliseconds (median ")
    assert "2023-11-14" in note and "converted to seconds" in note


def test_microsecond_and_nanosecond_strings_are_converted_exactly():
    for scale in (10**6, 10**9):
        stamps = [str(1_700_000_000 * scale + 5), str(1_700_000_060 * scale)]
        table = pa.table({"user_id": ["u", "u"], "item_id": ["a", "b"], "timestamp": stamps})
        checked = check_interactions(table, "log.csv")
        assert checked.table.column("timestamp").to_pylist() == [1_700_000_000, 1_700_000_060]


def test_an_items_file_with_its_own_reason_column_keeps_it_in_rejected():
    table = pa.table(
        {
            "item_id": ["i1", "i2", "i1"],
            "title": ["One", None, "Again"],
            "reason": ["bestseller", "staff pick", "promo"],
        }
    )
    checked = check_items(table, "items.csv")
    assert checked.table.column("reason").to_pylist() == ["bestseller"]
    rejected = checked.rejected
    assert rejected["reason"].tolist() == ["staff pick", "promo"]  # the user's column
    assert rejected["rejected_reason"].tolist() == ["null_title", "duplicate_item_id"]
    assert rejected["rejected_row"].tolist() == [2, 3]
    assert set(rejected["rejected_source"]) == {"items.csv"}
    taken = pa.table({"item_id": [None], "title": ["x"], "rejected_reason": ["mine"]})
    again = check_items(taken, "items.parquet")
    assert again.rejected["rejected_reason"].tolist() == ["mine"]
    assert again.counts() == {"null_item_id": 1}  # our reason went to _rejected_reason
    assert again.rejected["_rejected_reason"].tolist() == ["null_item_id"]


def test_a_duplicate_id_after_a_rejected_row_of_that_id_is_kept():
    table = pa.table({"item_id": ["i1", "i1"], "title": [" ", "Real title"]})
    checked = check_items(table, "items.csv")
    assert checked.table.column("title").to_pylist() == ["Real title"]
    assert checked.counts() == {"null_title": 1}


def test_kept_plus_rejected_is_what_was_read():
    table = pa.table(
        {
            "user_id": ["u", None, "u", "u"],
            "item_id": ["i1", "i1", "i1", "zz"],
            "timestamp": pa.array([1, 2, 1, 3], pa.int32()),
            "value": ["1", "2", "1", "inf"],
        }
    )
    checked = check_interactions(table, "t", item_ids={"i1"})
    assert checked.table.num_rows + len(checked.rejected) == checked.read == 4
    assert checked.counts() == {"null_user_id": 1, "duplicate": 1, "bad_value": 1}
