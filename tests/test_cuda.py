"""On a CUDA device (skipped without one): descend's trajectories equal torch's there too."""

from __future__ import annotations

import pytest
import torch

from tests.problem import assert_same_state, assert_same_trajectory
from tests.table import RECORDS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    ("record", "impl"),
    [pytest.param(r, i, id=f"{r.name}-{i}") for r in RECORDS for i in (*r.impls, None)],
)
def test_trajectory_on_cuda_matches_torch(record, impl):
    config = record.configs[0]
    runs = []
    for make in (
        lambda params: record.cls(params, **config.kwargs, impl=impl),
        lambda params: record.oracle(params, **config.for_oracle()),
    ):
        params = [p.detach().cuda().requires_grad_() for p in record.make_params()]
        optimizer = make(params)
        runs.append((record.run(optimizer, params, 20), optimizer))
    (ours, ours_opt), (theirs, theirs_opt) = runs
    assert_same_trajectory(ours, theirs)
    assert_same_state(ours_opt, theirs_opt)
