"""Jobs on a bad config or an impossible cluster: one line, before the heavy imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import JOBS

PROBE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {jobs!r})
    import {job}
    try:
        {job}.main({args!r})
    except SystemExit as exc:
        print("exit", exc.code)
    heavy = [m for m in ("torch", "ray", "mlflow", "transformers") if m in sys.modules]
    print("heavy", ",".join(heavy) or "none")
    """
)


@pytest.mark.parametrize("job", ["finetune", "evaluate", "promote", "build_index"])
def test_a_config_error_comes_before_torch_ray_and_mlflow_are_imported(job, tmp_path):
    args = ["--set", "train.lr=nan", "--set", "train.epochs=two"]
    if job == "build_index":
        args += ["--model", "models:/x/1", "--out", str(tmp_path / "o")]
    code = PROBE.format(jobs=str(JOBS), job=job, args=args)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.stdout.splitlines()[-2:] == ["exit 2", "heavy none"], out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "train.epochs must be an int, got 'two'" in line
    assert "train.lr must be a finite number, got 'nan'" in line


def test_yaml_error_in_a_config_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 2\n")
    out = subprocess.run(
        [sys.executable, str(JOBS / "finetune.py"), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: not valid YAML (")
