"""Your columns (``data.columns``): a file's columns read under their contract names, and one
console line per file saying what each column was used for and which were ignored."""

from __future__ import annotations

from pathlib import Path

import prepare_data  # jobs/prepare_data.py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from llmrec.config import DATA_COLUMNS, ConfigError, DataConfig, config_from_dict
from llmrec.data.contract import (
    INTERACTIONS_SCHEMA,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    ContractError,
    DataError,
)
from llmrec.data.prepare import load_source, prepare

LOG = "user_id,item_id,timestamp,rating,session\nu1,i1,1,4.5,s\nu1,i2,2,2,s\nu2,i1,3,5,t\n"
ITEMS = "item_id,title,description\ni1,Wool hat,Warm and soft\ni2,Rain coat,Keeps you dry.\n"


def _folder(tmp_path: Path, interactions: str = LOG, items: str = ITEMS) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "interactions.csv").write_text(interactions, encoding="utf-8")
    (src / "items.csv").write_text(items, encoding="utf-8")
    return src


def _prepare(src: Path, out: Path, **columns: object):
    return prepare(load_source(str(src), DataConfig(columns=dict(columns))), out)


def test_config_keys_are_the_contract_columns():
    contract = {
        "interactions": tuple(INTERACTIONS_SCHEMA.names),
        "items": tuple(ITEMS_SCHEMA.names),
        "users": tuple(USERS_SCHEMA.names),
    }
    assert contract == DATA_COLUMNS


def test_a_rating_column_is_named_as_ignored_until_it_is_mapped(tmp_path):
    src = _folder(tmp_path)
    plain = _prepare(src, tmp_path / "plain")
    assert plain.interactions.column("value").to_pylist() == [1.0, 1.0, 1.0]
    summary = plain.summary()
    assert (
        "interactions.csv: user_id, item_id, timestamp; absent: event (interaction), "
        "value (1.0), query; ignored: rating, session"
    ) in summary.splitlines()
    hint = "interactions.csv: column 'rating' ignored; map it with data.columns.value=rating"
    assert f"note: {hint}" in summary

    mapped = _prepare(src, tmp_path / "mapped", value="rating")
    assert mapped.interactions.column("value").to_pylist() == [4.5, 2.0, 5.0]
    lines = mapped.summary().splitlines()
    assert (
        "interactions.csv: user_id, item_id, timestamp, value<-rating; absent: event "
        "(interaction), query; ignored: session"
    ) in lines
    assert not any("column 'rating'" in line for line in lines)


def test_a_mapped_column_wins_over_the_contract_column_of_that_name(tmp_path):
    log = "user_id,item_id,timestamp,value,rating\nu1,i1,1,1,3\nu1,i2,2,1,4\n"
    prepared = _prepare(_folder(tmp_path, interactions=log), tmp_path / "out", value="rating")
    assert prepared.interactions.column("value").to_pylist() == [3.0, 4.0]
    assert "ignored: value" in prepared.columns[0]


def test_description_becomes_item_text_through_the_mapping(tmp_path):
    src = _folder(tmp_path)
    plain = _prepare(src, tmp_path / "plain")
    assert plain.catalogue.texts()[0] == "Wool hat."
    summary = plain.summary()
    assert (
        "items.csv: item_id, title; absent: text, categories; kept, not item text: description"
        in (summary.splitlines())
    )
    assert "column 'description' is kept but is not the item text; map it with " in summary
    assert "data.columns.text=description" in summary

    mapped = _prepare(src, tmp_path / "mapped", text=["title", "description"])
    assert mapped.catalogue.texts() == ["Wool hat. Warm and soft", "Rain coat. Keeps you dry."]
    assert "description" not in mapped.items.column_names  # read as the text, not kept twice
    assert "items.csv: item_id, title, text<-description; absent: categories" in mapped.columns


def test_several_text_columns_are_joined_with_their_names(tmp_path):
    items = (
        "item_id,name,description,material,tags\n"
        'i1,Wool hat,Warm and soft,Merino wool,"knit|winter"\n'
        "i2,Rain coat,,Nylon!,\n"
    )
    prepared = _prepare(
        _folder(tmp_path, items=items),
        tmp_path / "out",
        title="name",
        text=["description", "material"],
        categories="tags",
    )
    item = prepared.catalogue.items
    assert item["i1"].text == "description: Warm and soft. material: Merino wool."
    assert item["i2"].text == "material: Nylon!"
    assert item["i1"].categories == ("knit", "winter")
    assert prepared.catalogue.texts()[0] == (
        "Wool hat. Categories: knit, winter. description: Warm and soft. material: Merino wool."
    )
    assert (
        "items.csv: item_id, title<-name, text<-description+material, categories<-tags"
        in prepared.columns
    )


def test_chinese_column_names_ids_and_text(tmp_path):
    log = "顾客,商品,时间,评分\n用户甲,商品一,1,5\n用户甲,商品二,2,3\n用户乙,商品一,3,4\n"
    items = "商品,名称,描述\n商品一,羊毛帽,温暖柔软。\n商品二,雨衣,防水\n"
    prepared = _prepare(
        _folder(tmp_path, log, items),
        tmp_path / "out",
        user_id="顾客",
        item_id="商品",
        timestamp="时间",
        value="评分",
        title="名称",
        text=["名称", "描述"],
    )
    rows = prepared.interactions.to_pylist()
    assert [(r["user_id"], r["item_id"], r["value"]) for r in rows] == [
        ("用户甲", "商品一", 5.0),
        ("用户甲", "商品二", 3.0),
        ("用户乙", "商品一", 4.0),
    ]
    assert prepared.catalogue.texts() == ["羊毛帽. 温暖柔软。", "雨衣. 防水"]
    assert prepared.columns[0].startswith(
        "interactions.csv: user_id<-顾客, item_id<-商品, timestamp<-时间, value<-评分"
    )
    assert prepared.columns[1].startswith("items.csv: item_id<-商品, title<-名称, text<-描述")


def test_mapped_csv_ids_keep_their_leading_zeros(tmp_path):
    log = "customer,item_id,timestamp\n007,i1,1\n7,i2,2\n"
    prepared = _prepare(_folder(tmp_path, interactions=log), tmp_path / "out", user_id="customer")
    assert prepared.interactions.column("user_id").to_pylist() == ["007", "7"]


def test_a_key_for_one_table_and_a_shared_key_that_one_file_does_not_need(tmp_path):
    log = "user_id,product,timestamp\nu1,i1,1\nu1,i2,2\n"
    items = "sku,title\ni1,One\ni2,Two\n"
    src = _folder(tmp_path, interactions=log, items=items)
    prepared = _prepare(
        src, tmp_path / "a", **{"interactions.item_id": "product", "item_id": "sku"}
    )
    assert prepared.interactions.column("item_id").to_pylist() == ["i1", "i2"]
    assert prepared.columns[0].startswith("interactions.csv: user_id, item_id<-product,")
    assert prepared.columns[1].startswith("items.csv: item_id<-sku, title")
    # item_id: sku, for both files; the log has its own item_id column: that one is read
    log = "user_id,item_id,timestamp\nu1,i1,1\n"
    src = _folder(tmp_path, interactions=log, items="sku,title\ni1,One\n")
    prepared = _prepare(src, tmp_path / "b", item_id="sku")
    assert prepared.columns[0].startswith("interactions.csv: user_id, item_id, timestamp")
    assert prepared.columns[1].startswith("items.csv: item_id<-sku, title")
    # ... but a key that no file uses is a mistake
    items = "item_id,title\ni1,One\n"
    with pytest.raises(DataError, match=r"data\.columns\.item_id names column 'sku', which no"):
        _prepare(_folder(tmp_path, interactions=log, items=items), tmp_path / "c", item_id="sku")


def test_unknown_key_names_it_and_its_column(tmp_path):
    src = _folder(tmp_path)
    with pytest.raises(DataError) as err:
        _prepare(src, tmp_path / "out", rank="score")
    message = str(err.value)
    assert message.startswith(f"{src}: data.columns.rank (column 'score'): 'rank' is not")
    assert "user_id, item_id, timestamp, event, value, query, title, text, categories" in message
    with pytest.raises(ConfigError, match=r"data\.columns\.rank \(column 'score'\)"):
        config_from_dict({"data": {"columns": {"rank": "score"}}})
    with pytest.raises(ConfigError, match=r"data\.columns\.value must be a column name"):
        config_from_dict({"data": {"columns": {"value": ["a", "b"]}}})
    with pytest.raises(ConfigError, match=r"data\.columns\.text must be a column name or a list"):
        config_from_dict({"data": {"columns": {"text": []}}})


def test_a_mapped_column_the_file_lacks_names_file_key_column_and_the_files_columns(tmp_path):
    src = _folder(tmp_path)
    with pytest.raises(DataError) as err:
        _prepare(src, tmp_path / "out", value="ratng")
    assert str(err.value) == (
        f"{src / 'interactions.csv'}: data.columns.value names column 'ratng', which the file "
        "does not have (its columns: 'user_id', 'item_id', 'timestamp', 'rating', 'session')"
    )
    with pytest.raises(DataError, match=r"items\.csv: data\.columns\.text names column 'blurb'"):
        _prepare(src, tmp_path / "out", text=["description", "blurb"])


def test_a_missing_required_column_says_how_to_map_it(tmp_path):
    src = _folder(tmp_path, items="item_id,name\ni1,One\ni2,Two\n")
    with pytest.raises(ContractError) as err:
        _prepare(src, tmp_path / "out")
    assert str(err.value).startswith(
        f"{src / 'items.csv'}: column 'title' expected string, found no such column (its "
        "columns: 'item_id', 'name'; map 'name' with data.columns.title=name)"
    )


def test_a_mistyped_mapped_column_is_named_with_its_key(tmp_path):
    src = _folder(tmp_path)
    table = pa.table({"u": ["a"], "item_id": ["i1"], "timestamp": [1], "liked": [True]})
    (src / "interactions.csv").unlink()
    pq.write_table(table, src / "interactions.parquet")
    with pytest.raises(ContractError) as err:
        _prepare(src, tmp_path / "out", user_id="u", value="liked")
    assert str(err.value) == (
        f"{src / 'interactions.parquet'}: column 'liked' (data.columns.value) expected float32, "
        "found bool"
    )


def test_a_mapping_for_movielens_or_demo_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"data\.columns applies to a folder of interactions"):
        load_source("demo", DataConfig(columns={"value": "rating"}))


def test_prepare_data_job_takes_column_options(tmp_path, capsys):
    src = _folder(tmp_path)
    columns = ["--column", "value=rating", "--column", "text=title,description"]
    code = prepare_data.main([str(src), "--out", str(tmp_path / "out"), *columns])
    out = capsys.readouterr().out
    assert code == 0
    assert "interactions.csv: user_id, item_id, timestamp, value<-rating;" in out
    assert "items.csv: item_id, title, text<-description; absent: categories" in out
    with pytest.raises(SystemExit):
        prepare_data.main([str(src), "--out", str(tmp_path / "out"), "--column", "rank=score"])
    assert "data.columns.rank (column 'score')" in capsys.readouterr().err


def test_an_updates_logs_are_read_with_the_base_mapping(tmp_path):
    from llmrec.data.incoming import Sources, as_raw, gather

    base = _folder(tmp_path)
    same = tmp_path / "same"  # a log in the base's layout
    same.mkdir()
    (same / "interactions.csv").write_text("user_id,item_id,timestamp,rating\nu3,i2,9,1\n")
    (same / "items.csv").write_text("item_id,title\ni3,Scarf\n")
    contract = tmp_path / "contract"  # a log already in the contract's names
    contract.mkdir()
    (contract / "interactions.csv").write_text("user_id,item_id,timestamp,value\nu4,i3,10,2\n")
    (contract / "items.csv").write_text("item_id,title\ni3,Scarf\n")
    cfg = DataConfig(columns={"value": "rating", "text": ["description"]})
    raw = as_raw(gather(Sources(str(base), logs=[str(same), str(contract)]), cfg))
    prepared = prepare(raw, tmp_path / "out")
    assert prepared.interactions.column("value").to_pylist() == [4.5, 2.0, 5.0, 1.0, 2.0]
    assert prepared.catalogue.items["i1"].text == "Warm and soft"
    assert sum("value<-rating" in line for line in prepared.columns) == 2
