"""Time one optimizer step: descend's implementations against torch.optim's.

A thin wrapper around ``descend bench`` (:mod:`descend.cli.bench`, which holds the harness
and documents it; see also docs/benchmarks.md). Run from the repository root::

    .venv/bin/python benchmarks/step_time.py --threads 1          # full run (minutes)
    .venv/bin/python benchmarks/step_time.py --quick              # smaller workloads
    .venv/bin/python benchmarks/step_time.py --workload many-small --optimizers Adam \\
        --repeats 50 --json step_time.json

It takes the same options as ``descend bench`` (``--help`` lists them).
"""

from __future__ import annotations

import sys

from descend.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
