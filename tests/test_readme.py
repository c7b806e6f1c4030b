"""The README's code runs as written (a reader copies it first)."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_examples():
    assert BLOCKS, "README.md lost its Python example"


def test_readme_python_examples_run():
    namespace: dict = {}
    for block in BLOCKS:
        exec(compile(block, "README.md", "exec"), namespace)
    q, q_rot = namespace["q"], namespace["q_rot"]
    assert q_rot.shape == q.shape and q_rot.dtype == q.dtype
