"""No leaks: resident memory stays flat over 10,000 steps (benchmarks/memory_leak.py).

Each measurement runs in a fresh Python process: inside the test session, memory freed
by earlier tests is handed out again, so a leak would not raise the resident size. The
full run, every case for 10,000 steps, takes about a minute and is marked slow. The
quick test checks that the measurement catches a leak at all: a case that keeps 16 KiB
per step must fail it, and a real optimizer must pass it over the same steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

_MEASURE = """
import json, sys
sys.path.insert(0, {benchmarks!r})
import torch
import memory_leak

def leaky():
    step = memory_leak.adam()
    kept = []
    def leaking(index):
        step(index)
        kept.append(torch.ones(4096))  # 16 KiB a step
    return leaking

if "leak" in ({cases!r} or []):
    memory_leak.CASES["leak"] = leaky
outcomes = memory_leak.check(steps={steps}, cases={cases!r}, report=None)
print(json.dumps([[r.name, r.growth_bytes, r.growth_objects, ok] for r, ok in outcomes]))
"""


def _measure(steps: int, cases: list[str] | None) -> dict[str, tuple[int, int, bool]]:
    code = _MEASURE.format(benchmarks=str(BENCHMARKS), steps=steps, cases=cases)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return {name: (grown, objects, ok) for name, grown, objects, ok in json.loads(done.stdout)}


MIB = 2**20


def test_a_leak_is_caught_and_a_real_optimizer_passes():
    results = _measure(2_000, ["leak", "adam"])
    grown, objects, ok = results["leak"]
    # 1,600 judged steps of 16 KiB: 25 MiB, and as many tensors
    assert grown > 20 * MIB and not ok
    assert objects >= 1_500
    grown, objects, ok = results["adam"]
    assert ok and objects == 0, (grown, objects)


def test_resident_bytes_reads_this_process():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import memory_leak
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    before = memory_leak.resident_bytes()
    block = torch.ones(64 * MIB // 4)  # 64 MiB, every page written
    grown = memory_leak.resident_bytes() - before
    del block
    assert 60 * MIB < grown < 80 * MIB


@pytest.mark.slow
def test_memory_is_flat_over_10000_steps():
    results = _measure(10_000, None)
    assert list(results) == [
        "adam",
        "adam-flat-compiled",
        "sgd-scheduler",
        "ema",
        "skip-nonfinite",
    ]
    failing = {name: r for name, r in results.items() if not r[2]}
    assert not failing, failing
