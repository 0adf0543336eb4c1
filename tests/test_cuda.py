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


def test_averaging_on_cuda_swa_exact_ema_equal_torch_and_a_cpu_copy_swaps_in():
    from torch.optim import swa_utils

    import descend

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16)).double().cuda()
    ours = descend.AveragedModel(model)
    theirs = swa_utils.AveragedModel(model)  # torch's multi-tensor SWA on CUDA
    on_cpu = descend.AveragedModel(model, device="cpu")
    ema = descend.AveragedModel(model, multi_avg_fn=descend.get_ema_multi_avg_fn(0.9))
    torch_ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.9))
    snapshots = []
    for _ in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        snapshots.append([p.detach().clone() for p in model.parameters()])
        for averaged in (ours, theirs, on_cpu, ema, torch_ema):
            averaged.update_parameters(model)
    exact = [torch.stack(s).mean(0) for s in zip(*snapshots)]
    for a, c, e in zip(ours.module.parameters(), on_cpu.module.parameters(), exact):
        assert (a - e).abs().max() < 1e-14
        assert torch.equal(c, a.cpu())
    worst = max((t - e).abs().max() for t, e in zip(theirs.module.parameters(), exact))
    assert worst > 1e-10  # torch computes 1 / (n + 1) in float32 here
    for a, b in zip(ema.module.parameters(), torch_ema.module.parameters()):
        assert torch.equal(a, b)
    live = [p.detach().clone() for p in model.parameters()]
    with on_cpu.swapped_into(model):
        for p, c in zip(model.parameters(), on_cpu.module.parameters()):
            assert torch.equal(p.cpu(), c)
    for p, saved in zip(model.parameters(), live):
        assert torch.equal(p, saved)


@pytest.mark.parametrize("impl", ["compiled", None])
def test_flat_buffers_on_cuda_match_the_loop(impl):
    import descend
    from tests.test_flat import CASES

    for cls, options in CASES:
        models = []
        for flat in (False, True):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 8))
            model = model.double().cuda()
            if flat:
                descend.flatten(model)
            optimizer = cls(model.parameters(), impl=impl if flat else "loop", **options)
            generator = torch.Generator(device="cuda").manual_seed(1)
            for _ in range(5):
                optimizer.zero_grad(set_to_none=False)
                x = torch.randn(16, 64, device="cuda", dtype=torch.float64, generator=generator)
                model(x).square().mean().backward()
                optimizer.step()
            models.append(model)
        for p, q in zip(models[0].parameters(), models[1].parameters()):
            torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-14, msg=cls.__name__)
