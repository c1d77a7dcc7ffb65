"""The optional users table: the contract check, the MovieLens readers, a contract folder,
and item attribute columns carried by the catalogue into the bundle."""

import pyarrow as pa
import pyarrow.parquet as pq
from llmrec.data.catalogue import Catalogue
from llmrec.data.contract import check_users
from llmrec.data.prepare import load_source, prepare
from llmrec.data.readers import read_movielens


def test_movielens_100k_users_as_gender_age_band_and_occupation(ml100k, tmp_path):
    raw = read_movielens(str(ml100k))
    assert raw.users is not None and raw.users_source.endswith("u.user")
    users = raw.users.to_pylist()
    assert len(users) == 943
    # u.user: "1|24|M|technician|85711", "2|53|F|other|94043"
    assert users[0] == {"user_id": "1", "gender": "M", "age": "18-24", "occupation": "technician"}
    assert users[1]["age"] == "50-55"
    prepared = prepare(raw, tmp_path / "out")
    assert prepared.users.num_rows == 943
    assert pq.read_table(tmp_path / "out" / "users.parquet").num_rows == 943
    assert "users: 943 kept" in prepared.summary()


def test_movielens_1m_users_dat_codes_become_names(tmp_path):
    d = tmp_path / "ml-1m"
    d.mkdir()
    (d / "ratings.dat").write_text("1::10::5::978300760\n2::10::3::978302109\n")
    (d / "movies.dat").write_text("10::GoldenEye (1995)::Action|Adventure\n")
    (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    users = read_movielens(str(d)).users.to_pylist()
    assert users == [
        {"user_id": "1", "gender": "F", "age": "Under 18", "occupation": "K-12 student"},
        {"user_id": "2", "gender": "M", "age": "56+", "occupation": "self-employed"},
    ]


def test_contract_folder_users_are_checked_and_bad_rows_set_aside(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "items.csv").write_text("item_id,title\ni1,One\n")
    (src / "interactions.csv").write_text("user_id,item_id,timestamp\nu1,i1,1\n")
    (src / "users.csv").write_text("user_id,country\nu1,中国\n,FR\nu1,DE\nu2,\n")
    prepared = prepare(load_source(str(src)), tmp_path / "out")
    assert prepared.users.to_pylist() == [
        {"user_id": "u1", "country": "中国"},
        {"user_id": "u2", "country": None},
    ]
    assert prepared.rejected["users"] == {"null_user_id": 1, "duplicate_user_id": 1}
    assert (tmp_path / "out" / "rejected" / "users.parquet").exists()


def test_users_without_an_id_column_name_the_column():
    import pytest
    from llmrec.data.contract import ContractError

    with pytest.raises(ContractError, match=r"users.csv: column 'user_id' expected string"):
        check_users(pa.table({"id": ["u1"]}), "users.csv")


def test_a_source_without_users_has_none(tmp_path):
    prepared = prepare(load_source("demo"), tmp_path / "out")
    assert prepared.users is None and not (tmp_path / "out" / "users.parquet").exists()


def test_extra_item_columns_become_attributes_that_survive_a_subset():
    table = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "title": ["A", "B", "C"],
            "text": [None, None, None],
            "categories": [["x"], [], ["y"]],
            "provider": ["p1", None, "p2"],
            "tags": [["t1", "t2"], [], None],
            "year": [1999, 2000, 2001],  # not text: not an attribute
        }
    )
    cat = Catalogue.from_table(table)
    assert cat.attribute_names == ("categories", "provider", "tags")
    assert cat.attribute_values("provider") == [("p1",), (), ("p2",)]
    sub = cat.subset({"c", "a"})
    assert sub.attribute_values("tags") == [("t1", "t2"), ()]
