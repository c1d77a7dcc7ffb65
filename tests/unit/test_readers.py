import zipfile

import pytest
from llmrec.data.prepare import load_source, prepare
from llmrec.data.readers import DataSourceError, read_movielens, read_table


def test_movielens_100k_from_its_folder(ml100k):
    raw = read_movielens(str(ml100k))
    assert raw.interactions.num_rows == 100_000
    assert raw.items.num_rows == 1_682
    first = raw.items.slice(0, 1).to_pylist()[0]
    assert first["title"] == "Toy Story (1995)"
    assert first["categories"] == ["Animation", "Children's", "Comedy"]


def _ml1m(folder):
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978302109\n")
    (folder / "movies.dat").write_text(
        "10::GoldenEye (1995)::Action|Adventure\n20::Heat (1995)::Crime\n"
    )


def test_movielens_1m_folder_and_zip(tmp_path):
    _ml1m(tmp_path / "ml-1m")
    raw = read_movielens(str(tmp_path / "ml-1m"))
    assert raw.interactions.column("value").to_pylist() == ["5", "3"]
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as zf:
        for f in ("ratings.dat", "movies.dat"):
            zf.write(tmp_path / "ml-1m" / f, f"ml-1m/{f}")
    prepared = prepare(load_source(str(tmp_path / "ml-1m.zip")), tmp_path / "out")
    assert prepared.interactions.num_rows == 2
    assert prepared.items.to_pylist()[0]["categories"] == ["Action", "Adventure"]


def test_movielens_latest_csv_with_tags(tmp_path):
    d = tmp_path / "ml-latest-small"
    d.mkdir()
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")
    (d / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Animation|Comedy\n'
        "2,Nothing (2000),(no genres listed)\n"
    )
    (d / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,funny,2\n")
    prepared = prepare(load_source(str(d)), tmp_path / "out")
    items = prepared.items.to_pylist()
    assert items[0]["text"] == "Tags: funny, pixar."
    assert items[1]["categories"] == []


def test_contract_folder_read_through_a_uri(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "items.csv").write_text("item_id,title\ni1,One\ni2,Two\n")
    (src / "interactions.csv").write_text("user_id,item_id,timestamp\nu,i1,1\nu,i3,2\n")
    prepared = prepare(load_source(src.as_uri()), tmp_path / "out")
    assert prepared.rejected["interactions"] == {"unknown_item": 1}
    assert (tmp_path / "out" / "rejected" / "interactions.parquet").exists()
    assert "rejected interactions: 1 x unknown_item" in prepared.summary()


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataSourceError, match="no such file or folder"):
        read_table(str(tmp_path / "nope.parquet"))
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "items.csv").write_text("item_id,title\n")
    with pytest.raises(DataSourceError, match=r"missing \['interactions'\]"):
        load_source(str(tmp_path / "only"))


def test_every_matching_file_of_a_table_is_read_and_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    (src / "items.csv").write_text("item_id,title\ni1,One\ni2,Two\n")
    (src / "interactions.csv").write_text("user_id,item_id,timestamp\nu,i1,1\nu,i9,2\n")
    (src / "interactions.2023.csv").write_text("user_id,item_id,timestamp\nv,i2,3\n")
    pq.write_table(
        pa.table({"user_id": ["w", "w"], "item_id": ["i1", "i1"], "timestamp": [4, 4]}),
        src / "interactions.parquet",
    )
    prepared = prepare(load_source(str(src)), tmp_path / "out")
    assert prepared.interactions.column("user_id").to_pylist() == ["v", "u", "w"]
    assert prepared.read == {"items": 2, "interactions": 5}
    assert prepared.rejected["interactions"] == {"unknown_item": 1, "duplicate": 1}
    assert (
        "note: interactions: read 3 files as one table: interactions.2023.csv, "
        "interactions.csv, interactions.parquet" in prepared.summary()
    )
    import pandas as pd

    rejected = pd.read_parquet(tmp_path / "out" / "rejected" / "interactions.parquet")
    by_reason = rejected.set_index("rejected_reason")
    assert by_reason.loc["unknown_item", "rejected_source"] == str(src / "interactions.csv")
    assert by_reason.loc["unknown_item", "rejected_row"] == 2
    assert by_reason.loc["duplicate", "rejected_source"] == str(src / "interactions.parquet")
    assert by_reason.loc["duplicate", "rejected_row"] == 2


def test_written_items_open_with_pandas_whatever_the_categories(tmp_path):
    import pandas as pd

    src = tmp_path / "src"
    src.mkdir()
    # an empty categories column (CSV strings) and one whose values are all missing
    (src / "items.csv").write_text("item_id,title,categories,note\ni1,One,,\ni2,Two,,\n")
    (src / "interactions.csv").write_text("user_id,item_id,timestamp\nu,i1,1\n")
    prepare(load_source(str(src)), tmp_path / "out")
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert [list(c) for c in items["categories"]] == [[], []]
    # and a file pandas wrote with its own metadata (list<null>) reads back as a source
    pd.DataFrame(
        {"item_id": ["i1", "i2"], "title": ["One", "Two"], "categories": [[], []]}
    ).to_parquet(src / "items.parquet")
    (src / "items.csv").unlink()
    prepared = prepare(load_source(str(src)), tmp_path / "again")
    assert prepared.items.column("categories").to_pylist() == [[], []]
    assert len(pd.read_parquet(tmp_path / "again" / "items.parquet")) == 2


def test_a_source_that_is_a_file_says_what_is_expected(tmp_path):
    (tmp_path / "interactions.csv").write_text("user_id,item_id,timestamp\n")
    with pytest.raises(DataSourceError, match="is a file; expected a folder holding"):
        load_source(str(tmp_path / "interactions.csv"))
