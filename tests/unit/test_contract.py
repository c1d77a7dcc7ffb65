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
    bad_ts = checked.rejected[checked.rejected["reason"] == "bad_timestamp"]
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
