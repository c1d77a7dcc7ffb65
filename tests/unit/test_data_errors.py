"""jobs/prepare_data.py on broken input: one readable line naming the file (and line), never a
traceback; rows that cannot be parsed are set aside, not fatal."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import prepare_data  # jobs/prepare_data.py
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from llmrec.data.readers import read_table

from tests.conftest import JOBS

ITEMS = "item_id,title\ni1,One\ni2,Two\n"
LOG = "user_id,item_id,timestamp\nu,i1,1\nu,i2,2\n"


def _folder(tmp_path: Path, interactions: bytes | str = LOG, items: bytes | str = ITEMS) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, body in (("interactions.csv", interactions), ("items.csv", items)):
        data = body.encode() if isinstance(body, str) else body
        (src / name).write_bytes(data)
    return src


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = prepare_data.main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_empty_csv_names_the_file(tmp_path, capsys):
    src = _folder(tmp_path, interactions="")
    code, _, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert f"{src / 'interactions.csv'}: empty file" in line


def test_header_only_items_csv_says_there_are_no_items(tmp_path, capsys):
    src = _folder(tmp_path, items="item_id,title,text,categories,price\n")
    code, _, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert f"{src / 'items.csv'}: no usable items: no rows read" in line


def test_non_utf8_bytes_name_the_line(tmp_path, capsys):
    src = _folder(tmp_path, interactions=b"user_id,item_id,timestamp\nu,i1,1\nu,i\xff2,2\n")
    code, _, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert f"{src / 'interactions.csv'}: line 3 is not UTF-8 (byte 0xff at position 4)" in line


def test_ragged_row_and_unterminated_quote_are_set_aside_with_their_line(tmp_path, capsys):
    body = 'user_id,item_id,timestamp\nu,i1,1\nu,i2,2,extra\nv,"i1,3\nw,i2,4\n'
    src = _folder(tmp_path, interactions=body)
    code, out, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "interactions: 1 kept of 3 read" in out
    assert "rejected interactions: 2 x unparsable_row" in out
    assert "line 4: a quoted field runs over 2 lines (an unterminated quote?)" in out
    rejected = pd.read_parquet(tmp_path / "out" / "rejected" / "interactions.parquet")
    assert rejected["rejected_row"].tolist() == [3, 4]  # lines of the file, header = 1
    assert rejected["rejected_text"].tolist() == ["u,i2,2,extra", 'v,"i1,3\nw,i2,4']
    with pytest.raises(ValueError, match=r"line 3: expected 3 fields, found 4: 'u,i2,2,extra'"):
        read_table(str(src / "interactions.csv"))  # strict: the caller decides


def test_a_field_over_the_csv_block_size_is_read(tmp_path, capsys):
    long_text = "x" * (3 << 20)
    src = _folder(tmp_path, items=f"item_id,title,text\ni1,One,{long_text}\ni2,Two,short\n")
    code, _, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    items = pq.read_table(tmp_path / "out" / "items.parquet")
    assert items.column("text").to_pylist() == [long_text, "short"]


def test_missing_source_folder(tmp_path, capsys):
    code, _, err = _run([str(tmp_path / "nope"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such file or folder" in _one_error_line(err)


def test_corrupt_zip(tmp_path, capsys):
    (tmp_path / "ml-1m.zip").write_bytes(b"not a zip at all")
    code, _, err = _run([str(tmp_path / "ml-1m.zip"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert f"{tmp_path / 'ml-1m.zip'}: not a readable zip archive" in _one_error_line(err)


def test_zip_without_movielens_files(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    code, _, err = _run([str(tmp_path / "other.zip"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "zip holds no MovieLens ratings file" in _one_error_line(err)


def test_out_naming_a_file(tmp_path, capsys):
    src = _folder(tmp_path)
    (tmp_path / "taken").write_text("x")
    code, _, err = _run([str(src), "--out", str(tmp_path / "taken")], capsys)
    assert code == 2
    assert f"{tmp_path / 'taken'}: is a file; the output must be a folder" in _one_error_line(err)


def test_extra_column_empty_in_its_first_thousand_rows_is_kept(tmp_path, capsys):
    rows = "".join(f"i{i},Title {i},{'' if i < 1500 else 'red'}\n" for i in range(2000))
    src = _folder(tmp_path, items="item_id,title,colour\n" + rows)
    code, _, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert len(items) == 2000
    assert items["colour"].isna().sum() == 1500 and set(items["colour"].dropna()) == {"red"}


def test_uint64_timestamps_beyond_int64_are_rejected_not_wrapped(tmp_path, capsys):
    src = _folder(tmp_path)
    (src / "interactions.csv").unlink()
    stamps = pa.array([1_700_000_000, 2**63 + 5, 1_700_000_100], pa.uint64())
    pq.write_table(
        pa.table({"user_id": ["u"] * 3, "item_id": ["i1", "i2", "i1"], "timestamp": stamps}),
        src / "interactions.parquet",
    )
    code, out, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert "rejected interactions: 1 x bad_timestamp" in out
    kept = pq.read_table(tmp_path / "out" / "interactions.parquet").column("timestamp")
    assert kept.to_pylist() == [1_700_000_000, 1_700_000_100]


def test_unexpected_errors_are_one_line_unless_verbose(tmp_path, capsys, monkeypatch):
    import llmrec.data.prepare as prepare_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("first line\nsecond\nthe root cause")

    monkeypatch.setattr(prepare_module, "prepare", broken)
    src = _folder(tmp_path)
    code, _, err = _run([str(src), "--out", str(tmp_path / "out")], capsys)
    assert code == 1
    line = _one_error_line(err)
    assert "RuntimeError: first line ... the root cause" in line
    assert "--verbose" in line
    with pytest.raises(RuntimeError, match="root cause"):
        prepare_data.main([str(src), "--out", str(tmp_path / "out"), "--verbose"])


def test_job_process_exits_non_zero_with_one_line(tmp_path):
    src = _folder(tmp_path, interactions="")
    out = subprocess.run(
        [sys.executable, str(JOBS / "prepare_data.py"), str(src), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {src / 'interactions.csv'}: empty file (a CSV file " + (
        "starts with a header of column names)"
    )
