"""The repository layout keeps the standard library's `platform` usable."""

import subprocess
import sys

from tests.conftest import REPO


def test_stdlib_platform_and_llmrec_both_import_from_repo_root():
    code = "import platform, llmrec, torch, ray; print(platform.system(), llmrec.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    system, path = out.stdout.split()
    assert system == "Linux"
    assert path.endswith("platform/llmrec/__init__.py")
    assert not (REPO / "platform" / "__init__.py").exists()
