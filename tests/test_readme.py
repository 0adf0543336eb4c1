"""The README's example runs and prints what its comment says."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs_and_prints_the_values_in_force():
    text = README.read_text()
    assert text.index("make demo") < text.index("```python")
    assert text.index("make test") < text.index("```python")
    (example,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(example.strip().splitlines()) <= 12
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "README.md", "exec"), {})
    assert printed.getvalue().strip() == (
        "{'lr': 0.0, 'betas': (0.9, 0.999), 'eps': 1e-08, 'weight_decay': 0.01}"
    )
