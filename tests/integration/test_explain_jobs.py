"""jobs/explain.py and jobs/query_eval.py against the version the finetune job registered
(demo data): an explained answer printed as a table; the query set measured with parsing
on and off."""

import explain  # jobs/explain.py
import pytest
import query_eval  # jobs/query_eval.py

pytestmark = pytest.mark.slow


def _registry(trained) -> list[str]:
    return [a for o in trained["overrides"] if o.startswith("registry.") for a in ("--set", o)]


def test_explain_prints_the_answer_as_a_table(trained, capsys):
    args = ["--model", "models:/llmrec-scorer@champion", "--user", "u0003", "--k", "4"]
    query = ["--query", "a mystery but nothing romantic"]
    assert explain.main([*args, *query, *_registry(trained)]) == 0
    out = capsys.readouterr().out
    assert "llmrec-scorer/1, user u0003" in out
    assert "understood: {'categories': ['Mystery'], 'without': ['Romance']" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "|---" not in line]
    assert len(rows) == 5  # the header and 4 items
    assert all("not Romance" in row for row in rows[1:])
    assert out.count("matches Mystery") + out.count("matches not Romance") >= 4


def test_explain_names_a_bad_user_in_one_line(trained, capsys):
    args = ["--model", "models:/llmrec-scorer@champion", "--user", "nobody"]
    with pytest.raises(SystemExit) as exit_:
        explain.main([*args, *_registry(trained)])
    assert exit_.value.code != 0
    assert "unknown user_id 'nobody'" in capsys.readouterr().err


def test_query_eval_measures_understanding_against_parsing_off(trained, capsys):
    args = ["--model", "models:/llmrec-scorer@champion", "--queries", "60", "--seed", "1"]
    assert query_eval.main([*args, *_registry(trained)]) == 0
    out = capsys.readouterr().out
    assert "60 queries (seed 1;" in out
    rows = {line.split("|")[1].strip(): line.split("|") for line in out.splitlines() if "|" in line}
    assert float(rows["without (unwanted)"][4]) >= 0.9  # recall
    assert float(rows["lists without an unwanted category"][3]) == 1.0  # parsing on
    on, off = (float(v) for v in rows["items in a wanted category"][3:5])
    assert on > off
