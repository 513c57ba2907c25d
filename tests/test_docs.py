"""The Python examples in the docs run as written, top to bottom, in an empty folder."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(page: Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL))


@pytest.mark.slow
@pytest.mark.parametrize("page", ["python.md", "your-network.md"])
def test_examples_run(page, tmp_path, capsys):
    (tmp_path / "protocols").symlink_to(ROOT / "protocols")
    code = python_blocks(ROOT / "docs" / page)
    assert code.strip(), f"no python examples in docs/{page}"
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, f"docs/{page}", "exec"), {"__name__": "__docs__"})
    finally:
        os.chdir(here)
    printed = capsys.readouterr().out
    assert "False" not in printed.split(), printed  # the examples print True where they check something
