"""descend under torch.distributed: DDP, ZeroRedundancyOptimizer, FSDP2 and
torch.distributed.checkpoint, on two processes (gloo, CPU).

One pair of processes (tests/distributed_harness.py) runs every scenario of the default
suite, and a second pair the slow ones; each test then compares what the processes
computed with single-process training on the same global batches, in float64.

The default suite runs one or a few scenarios of each of the four: every optimizer under
DDP with its first config, every elementwise one under FSDP2 with ``impl=None`` (the
multi-tensor path and the loop), one ZeRO case, one DCP case, and the refusals. The slow
suite (``make test-slow``) runs the rest: DDP with the defaults and the other configs,
FSDP2 with each implementation (the compiled kernel among them), the other ZeRO and DCP
cases.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

import descend
from descend.schedules import Cosine, Linear, Warmup
from tests.distributed_harness import (
    Net,
    attempt,
    default_dtype,
    run_in_processes,
    shard,
    snapshot,
    train,
    unwrap,
)
from tests.problem import assert_same_state
from tests.records import Config, Record
from tests.table import BY_NAME, RECORDS

RTOL = 1e-12
"""How closely distributed training must follow single-process training. The reference
sums the batch's gradient as the processes do (see ``train``), and on this machine DDP,
and FSDP2 with every implementation but the compiled kernel (compared with the loop),
match it bit for bit; the margin is for other BLAS libraries and thread counts."""
STEPS = 6
DOCS = Path(__file__).resolve().parent.parent / "docs" / "distributed.md"


def assert_trajectories(ours: list, reference: list, what: str, rtol: float = RTOL) -> None:
    assert len(ours) == len(reference), what
    for step, (actual, expected) in enumerate(zip(ours, reference), start=1):
        for index, (a, b) in enumerate(zip(actual, expected)):
            torch.testing.assert_close(
                a,
                b,
                rtol=rtol,
                atol=1e-14,
                msg=lambda m, s=step, i=index: f"{what}, step {s}, parameter {i}: {m}",
            )


def ranks_agree(results: list[dict], key: tuple) -> Any:
    """The result of ``key`` on rank 0, after checking that rank 1 computed the same
    parameters bit for bit (every rank must hold the same model)."""
    first, second = (unwrap(r[key], str(key)) for r in results)
    for step, (a, b) in enumerate(zip(first["trajectory"], second["trajectory"]), start=1):
        for index, (x, y) in enumerate(zip(a, b)):
            assert torch.equal(x, y), f"{key}: ranks differ at step {step}, parameter {index}"
    return first


# --------------------------------------------------------------------------------------
# Scenarios: what the two processes run
# --------------------------------------------------------------------------------------


def model_for(record: Record, **options: Any) -> Net:
    kind = {"matrices": "matrices", "sparse": "tables"}.get(record.problem, "dense")
    if kind == "dense":
        options.setdefault("complex", record.supports_complex)
    return Net(kind, **options)


def ddp_configs(record: Record, slow: bool = False) -> list[Config]:
    """The configs DDP runs: the record's first config in the default suite; the defaults
    (but for LBFGS, whose closure all-reduces at every evaluation) and the record's other
    configs in the slow one."""
    if not slow:
        return record.configs[:1]
    return record.configs[1:] if record.closure else [Config("defaults", {}), *record.configs[1:]]


def ddp_optimizer(record: Record, config: Config, model: torch.nn.Module):
    params = list(model.parameters())
    groups = record.param_groups(params, config) if len(params) > 1 else params
    return record.cls(groups, **config.kwargs)


def run_ddp(record: Record, config: Config) -> dict:
    """Every process trains on its half of each batch; DDP averages the gradients."""
    model = model_for(record)
    wrapped = DistributedDataParallel(model)
    optimizer = ddp_optimizer(record, config, model)
    trajectory = train(
        wrapped, optimizer, STEPS, distributed=True, closure=record.closure, module=model
    )
    return {"trajectory": trajectory}


ZERO_DEFAULT = "AdamW, scheduled lr and beta2"
"""The ZeRO case of the default suite (the others are slow)."""
ZERO_CASES: dict[str, tuple[type, dict, dict]] = {
    "Adam, AMSGrad, L2": (descend.Adam, {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}, {}),
    "SGD, Nesterov momentum": (descend.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, {}),
    "AdamW, scheduled lr and beta2": (
        descend.AdamW,
        {"lr": Warmup(Cosine(0.05, 10), 2), "betas": (0.9, Linear(0.9, 0.999, 6))},
        {},
    ),
    "SGD, per-step lr, bucket views": (
        descend.SGD,
        {"lr": [0.1 - 0.005 * step for step in range(2 * STEPS)], "momentum": 0.5},
        {"parameters_as_bucket_view": True},
    ),
}


def run_zero(name: str) -> dict:
    """ZeroRedundancyOptimizer over DDP: each process's descend optimizer updates part of
    the parameters. Halfway, the state is consolidated on rank 0 (torch's format)."""
    # imported here, in the processes: at import, torch.distributed.optim compiles torch's
    # functional optimizers with torch.jit.script, and warns that it is deprecated
    from torch.distributed.optim import ZeroRedundancyOptimizer

    cls, options, zero_options = ZERO_CASES[name]
    model = Net()
    wrapped = DistributedDataParallel(model)
    optimizer = ZeroRedundancyOptimizer(
        model.parameters(), optimizer_class=cls, **zero_options, **options
    )
    trajectory = train(wrapped, optimizer, STEPS // 2, distributed=True, module=model)
    optimizer.consolidate_state_dict(to=0)
    # a copy: like any state_dict(), it holds the live state tensors of this rank's share
    state_dict = copy.deepcopy(optimizer.state_dict()) if dist.get_rank() == 0 else None
    trajectory += train(
        wrapped, optimizer, STEPS // 2, start=STEPS // 2, distributed=True, module=model
    )
    return {
        "trajectory": trajectory,
        "state_dict": state_dict,
        "local_params": sum(len(g["params"]) for g in optimizer.optim.param_groups),
        "local_class": type(optimizer.optim),
    }


FSDP_RECORDS = [r for r in RECORDS if r.cls.flat_update]
"""The elementwise optimizers, whose update of each shard is the update of the whole."""
NOT_ELEMENTWISE = {
    "Adafactor": "as its second moments are means over whole rows and columns; got one of "
    "shape (3, 4). Use an elementwise optimizer such as AdamW",
    "Muon": "as it orthogonalizes whole matrices; got one of shape (3, 4). Use an "
    "elementwise optimizer such as AdamW",
}
"""Optimizers whose update is not elementwise, which refuse FSDP2's parameters: run on
DTensors, their operations failed inside DTensor halfway through a step."""


def fsdp_groups(record: Record, config: Config, model: Net) -> list[dict]:
    """The small parameters, and the wide matrix in a group of its own with half the lr."""
    named = dict(model.named_parameters())
    groups = [{"params": [p for n, p in named.items() if n != "wide"]}, {"params": [named["wide"]]}]
    if "lr" in config.kwargs:
        groups[1]["lr"] = 0.5 * float(config.kwargs["lr"])
    return groups


def fsdp_model(record: Record) -> Net:
    return Net(scalar=False, complex=record.supports_complex, wide=True)


def run_fsdp(record: Record, config: Config, impl: str | None) -> dict:
    """FSDP2: every parameter a DTensor sharded over the two processes (dimension 0)."""
    model = shard(fsdp_model(record))
    optimizer = record.cls(fsdp_groups(record, config, model), **config.kwargs, impl=impl)
    trajectory = train(model, optimizer, STEPS, distributed=True)
    chosen = [
        optimizer._impl(g, [p for p in g["params"] if p.grad is not None])
        for g in optimizer.param_groups
    ]
    sharded_state = {
        (key, type(value).__name__)
        for state in optimizer.state.values()
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    }
    kernel = record.cls.compiled_kernel
    return {
        "trajectory": trajectory,
        "impls": chosen,
        "param_types": {type(p).__name__ for p in model.parameters()},
        "state_types": sharded_state,
        "kernel": repr(kernel) if kernel is not None else None,
    }


def run_layouts() -> dict:
    """impl="compiled" on a DTensor parameter whose gradient or state is laid out
    otherwise (the parameter sharded, they replicated): the gradient is redistributed;
    the state is refused, before anything changes, and impl="loop" then takes it."""
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    start, gradients = layouts_problem()
    param = torch.nn.Parameter(distribute_tensor(start, mesh, [Shard(0)]))
    optimizer = descend.Adam([param], **LAYOUTS_OPTIONS, impl="compiled")
    trajectory = []
    for gradient in gradients[:2]:
        param.grad = distribute_tensor(gradient, mesh, [Replicate()])
        optimizer.step()
        trajectory.append([param.full_tensor()])
    state = optimizer.state[param]
    state["exp_avg"] = state["exp_avg"].redistribute(mesh, [Replicate()])
    before = [param.full_tensor(), *(state[k].full_tensor() for k in ("exp_avg", "exp_avg_sq"))]
    param.grad = distribute_tensor(gradients[2], mesh, [Shard(0)])
    try:
        optimizer.step()
        error = None
    except RuntimeError as caught:
        error = str(caught)
    after = [param.full_tensor(), *(state[k].full_tensor() for k in ("exp_avg", "exp_avg_sq"))]
    unchanged = all(torch.equal(a, b) for a, b in zip(before, after))
    steps = (float(state["step"]), optimizer.param_groups[0]["step"])
    optimizer.param_groups[0]["impl"] = "loop"
    optimizer.step()
    trajectory.append([param.full_tensor()])
    return {"trajectory": trajectory, "error": error, "unchanged": unchanged, "steps": steps}


LAYOUTS_OPTIONS = {"lr": 0.1, "amsgrad": True, "weight_decay": 0.1}


def layouts_problem() -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(7)
    start = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    return start, [torch.randn(5, 3, generator=generator, dtype=torch.float64) for _ in range(3)]


def run_unsupported_under_fsdp(name: str) -> dict:
    """An optimizer that is not elementwise, under FSDP2: its first step's error, and the
    parameters and the number of states after it."""
    record = BY_NAME[name]
    model = shard(model_for(record, scalar=False))
    optimizer = record.cls(model.parameters(), **record.configs[0].kwargs)
    try:
        train(model, optimizer, 1, distributed=True)
    except RuntimeError as error:
        return {"error": str(error), "params": snapshot(model), "state": len(optimizer.state)}
    return {"error": None}


def run_sharding_mismatch() -> dict:
    """Optimizer state of plain tensors loaded into an optimizer of FSDP2's DTensor
    parameters, and the state of DTensors into one of plain tensors: refused, nothing
    changed; then the route the error points to (get/set_optimizer_state_dict)."""
    plain_model = Net(scalar=False)
    plain = descend.Adam(plain_model.parameters(), lr=0.01)
    train(plain_model, plain, 2)  # each process alone, on the whole batches
    sharded_model = shard(Net(scalar=False))
    sharded = descend.Adam(sharded_model.parameters(), lr=0.01)
    train(sharded_model, sharded, 1, distributed=True)

    def local_state(optimizer: torch.optim.Optimizer) -> list:
        return [
            (value.to_local() if hasattr(value, "to_local") else value).clone()
            for state in optimizer.state.values()
            for value in state.values()
        ] + [group["step"] for group in optimizer.param_groups]

    result: dict[str, Any] = {}
    for name, loader, saver in (("into sharded", sharded, plain), ("into plain", plain, sharded)):
        before = local_state(loader)
        try:
            loader.load_state_dict(copy.deepcopy(saver.state_dict()))
            result[name] = None
        except ValueError as error:
            result[name] = str(error)
        after = local_state(loader)
        result[f"{name} unchanged"] = len(before) == len(after) and all(
            torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
            for a, b in zip(before, after)
        )
    set_optimizer_state_dict(
        sharded_model,
        sharded,
        get_optimizer_state_dict(plain_model, plain),
        options=StateDictOptions(full_state_dict=True),
    )
    result["set"] = [
        (type(sharded.state[p]["exp_avg"]).__name__, sharded.state[p]["exp_avg"].full_tensor())
        for p in sharded_model.parameters()
    ]
    result["plain"] = [plain.state[p]["exp_avg"] for p in plain_model.parameters()]
    result["set steps"] = [g["step"] for g in sharded.param_groups]
    return result


DCP_DEFAULT = "Adam, AMSGrad, cosine lr"
"""The DCP case of the default suite (the others are slow)."""
DCP_CASES: dict[str, tuple[type, dict]] = {
    "Adam, AMSGrad, cosine lr": (descend.Adam, {"lr": Cosine(0.05, 2 * STEPS), "amsgrad": True}),
    "SGD, momentum, per-step lr": (
        descend.SGD,
        {"lr": [0.1 - 0.005 * step for step in range(2 * STEPS)], "momentum": 0.9},
    ),
    "Rprop": (descend.Rprop, {"lr": 0.02}),
}


def run_dcp(name: str, directory: str) -> dict:
    """FSDP2 training, checkpointed with torch.distributed.checkpoint halfway; then the
    checkpoint loaded into a fresh sharded model and optimizer, which continue."""
    cls, options = DCP_CASES[name]
    half = STEPS // 2
    path = str(Path(directory) / f"checkpoint-{name}")

    def build() -> tuple[Net, torch.optim.Optimizer]:
        model = shard(Net(scalar=False, complex=True))
        return model, cls(model.parameters(), **options)

    model, optimizer = build()
    train(model, optimizer, half, distributed=True)
    dcp.save(
        {
            "model": get_model_state_dict(model),
            "optimizer": get_optimizer_state_dict(model, optimizer),
        },
        checkpoint_id=path,
    )
    continued = train(model, optimizer, half, start=half, distributed=True)

    model, optimizer = build()
    checkpoint = {
        "model": get_model_state_dict(model),
        "optimizer": get_optimizer_state_dict(model, optimizer),
    }
    dcp.load(checkpoint, checkpoint_id=path)
    set_model_state_dict(model, checkpoint["model"])
    set_optimizer_state_dict(model, optimizer, checkpoint["optimizer"])
    steps = [g["step"] for g in optimizer.param_groups]
    resumed = train(model, optimizer, half, start=half, distributed=True)
    return {"trajectory": continued, "resumed": resumed, "path": path, "group_steps": steps}


def run_docs_examples(directory: str) -> list:
    """The ``py`` blocks of docs/distributed.md, run in order as one script in both
    processes, from ``directory`` (the page's examples assume a process group, which the
    harness has started)."""
    blocks = re.findall(r"^```py\n(.*?)^```", DOCS.read_text(), flags=re.S | re.M)
    os.chdir(directory)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    outcomes = []
    for number, code in enumerate(blocks, start=1):
        where = f"docs/distributed.md, py block {number}"
        outcomes.append(attempt(exec, compile(code, where, "exec"), namespace))
    return outcomes


def in_suite(cases: dict, default: str, slow: bool) -> list[str]:
    """The names of ``cases`` that one suite runs: ``default`` in the default suite, the
    others in the slow one."""
    return [name for name in cases if (name == default) != slow]


def pair_worker(directory: str, slow: bool) -> dict:
    """Every scenario of one suite (default or slow), in one of the two processes."""
    results: dict[Any, Any] = {}
    with default_dtype(torch.float64):
        for record in RECORDS:
            for config in ddp_configs(record, slow):
                results["ddp", record.name, config.desc] = attempt(run_ddp, record, config)
        for record in FSDP_RECORDS:
            for impl in fsdp_impls(slow):
                results["fsdp", record.name, impl] = attempt(
                    run_fsdp, record, record.configs[0], impl
                )
        if slow:
            results["layouts"] = attempt(run_layouts)  # compiles the Adam kernel
        else:
            for name in NOT_ELEMENTWISE:
                results["fsdp", name] = attempt(run_unsupported_under_fsdp, name)
            results["sharding mismatch"] = attempt(run_sharding_mismatch)
        for name in in_suite(ZERO_CASES, ZERO_DEFAULT, slow):
            results["zero", name] = attempt(run_zero, name)
        for name in in_suite(DCP_CASES, DCP_DEFAULT, slow):
            results["dcp", name] = attempt(run_dcp, name, directory)
    if not slow:
        results["docs"] = run_docs_examples(directory)
    return results


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> list[dict]:
    """What both processes computed in the default suite's scenarios, by rank."""
    directory = tmp_path_factory.mktemp("distributed")
    return run_in_processes(pair_worker, directory, str(directory), False)


@pytest.fixture(scope="module")
def slow_pair(tmp_path_factory) -> list[dict]:
    """What both processes computed in the slow suite's scenarios, by rank."""
    directory = tmp_path_factory.mktemp("distributed-slow")
    return run_in_processes(pair_worker, directory, str(directory), True)


def results(request, slow: bool) -> list[dict]:
    return request.getfixturevalue("slow_pair" if slow else "pair")


def reference_run(model: torch.nn.Module, optimizer, steps: int = STEPS, **options) -> list:
    """Single-process training on the whole of each batch."""
    with default_dtype(torch.float64):
        return train(model, optimizer, steps, **options)


# --------------------------------------------------------------------------------------
# 1. DDP
# --------------------------------------------------------------------------------------

DDP_CASES = [
    pytest.param(
        record.name,
        config.desc,
        slow,
        id=f"{record.name}-{config.desc}",
        marks=[pytest.mark.slow] if slow else [],
    )
    for slow in (False, True)
    for record in RECORDS
    for config in ddp_configs(record, slow)
]


@pytest.mark.parametrize(("name", "desc", "slow"), DDP_CASES)
def test_ddp_matches_single_process_training(request, name, desc, slow):
    record = BY_NAME[name]
    (config,) = [c for c in ddp_configs(record, slow) if c.desc == desc]
    result = ranks_agree(results(request, slow), ("ddp", name, desc))
    with default_dtype(torch.float64):
        model = model_for(record)
        optimizer = ddp_optimizer(record, config, model)
    reference = reference_run(model, optimizer, closure=record.closure)
    assert_trajectories(result["trajectory"], reference, f"DDP {name} ({desc})")


# --------------------------------------------------------------------------------------
# 2. ZeroRedundancyOptimizer
# --------------------------------------------------------------------------------------


def zero_reference(name: str) -> list:
    cls, options, _ = ZERO_CASES[name]
    with default_dtype(torch.float64):
        model = Net()
        optimizer = cls(model.parameters(), **options)
    return reference_run(model, optimizer)


def suite_cases(cases: dict, default: str) -> list:
    """pytest parameters ``(name, slow)`` for each of ``cases``, all but ``default`` slow."""
    return [
        pytest.param(name, slow, id=name, marks=[pytest.mark.slow] if slow else [])
        for slow in (False, True)
        for name in in_suite(cases, default, slow)
    ]


ZERO_SUITE_CASES = suite_cases(ZERO_CASES, ZERO_DEFAULT)


@pytest.mark.parametrize(("name", "slow"), ZERO_SUITE_CASES)
def test_zero_redundancy_optimizer_matches_single_process_training(request, name, slow):
    cls, _, _ = ZERO_CASES[name]
    pair = results(request, slow)
    result = ranks_agree(pair, ("zero", name))
    assert result["local_class"] is cls
    shares = [unwrap(rank["zero", name])["local_params"] for rank in pair]
    assert min(shares) > 0, f"each process updates a share of the parameters, got {shares}"
    assert sum(shares) == len(list(Net().parameters()))
    assert_trajectories(result["trajectory"], zero_reference(name), f"ZeRO {name}")


@pytest.mark.parametrize(("name", "slow"), ZERO_SUITE_CASES)
def test_zero_consolidated_state_dict_resumes_in_one_process(request, name, slow):
    """rank 0's consolidated state dict, in torch's format, continues a single-process
    descend optimizer where the processes were."""
    cls, options, _ = ZERO_CASES[name]
    half = STEPS // 2
    state_dict = unwrap(results(request, slow)[0]["zero", name])["state_dict"]
    assert [group["step"] for group in state_dict["param_groups"]] == [half]
    reference = zero_reference(name)
    with default_dtype(torch.float64):
        model = Net()
        with torch.no_grad():
            for param, value in zip(model.parameters(), reference[half - 1]):
                param.copy_(value)
        optimizer = cls(model.parameters(), **options)
        optimizer.load_state_dict(state_dict)
    resumed = reference_run(model, optimizer, half, start=half)
    assert_trajectories(resumed, reference[half:], f"ZeRO {name}, resumed")


# --------------------------------------------------------------------------------------
# 3. FSDP2
# --------------------------------------------------------------------------------------


def fsdp_impls(slow: bool) -> tuple:
    """``impl=None`` in the default suite (the multi-tensor path for the small parameters,
    the loop for the wide one); each implementation on its own in the slow suite."""
    return ("loop", "foreach", "compiled") if slow else (None,)


FSDP_CASES = [
    pytest.param(
        record.name,
        impl,
        slow,
        id=f"{record.name}-{impl}",
        marks=[pytest.mark.slow] if slow else [],
    )
    for slow in (False, True)
    for record in FSDP_RECORDS
    for impl in fsdp_impls(slow)
]


@pytest.mark.parametrize(("name", "impl", "slow"), FSDP_CASES)
def test_fsdp2_matches_single_process_training(request, name, impl, slow):
    record = BY_NAME[name]
    config = record.configs[0]
    result = ranks_agree(results(request, slow), ("fsdp", name, impl))
    assert result["param_types"] == {"DTensor"}
    keys = {key for key, _ in result["state_types"]}
    assert keys and result["state_types"] == {(key, "DTensor") for key in keys}, (
        f"per-element state must be sharded like the parameters: {result['state_types']}"
    )
    # impl=None: the multi-tensor path for the small parameters, the loop for the wide one
    assert result["impls"] == (["foreach", "loop"] if impl is None else [impl, impl])
    # the same implementation on plain tensors; the compiled kernel against the loop, its
    # reference (tests/test_compiled.py compares the two closely)
    reference_impl = "loop" if impl == "compiled" else impl
    with default_dtype(torch.float64):
        model = fsdp_model(record)
        groups = fsdp_groups(record, config, model)
        optimizer = record.cls(groups, **config.kwargs, impl=reference_impl)
    reference = reference_run(model, optimizer)
    assert_trajectories(result["trajectory"], reference, f"FSDP2 {name}, impl={impl}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_compiled_kernel_runs_on_each_process_shard(slow_pair, name):
    """impl="compiled" on FSDP2's parameters compiles the kernel for the local shards
    (it does not fall back to running eagerly)."""
    kernel = unwrap(slow_pair[0]["fsdp", name, "compiled"])["kernel"]
    assert re.fullmatch(rf"Kernel\({name.lower()}_kernel, [1-9]\d* compiled\)", kernel), kernel


@pytest.mark.slow
def test_compiled_kernel_redistributes_gradients_and_refuses_state_laid_out_otherwise(
    slow_pair,
):
    result = ranks_agree(slow_pair, "layouts")
    assert re.fullmatch(
        re.escape(
            "state of a DTensor parameter of shape (5, 3) is laid out as (Replicate(),), the "
            "parameter as (Shard(dim=0),); impl='compiled' updates each process's part and "
            "needs them alike (impl='loop' and 'foreach' do not)"
        ),
        result["error"],
    )
    assert result["unchanged"], "the refused step changed the parameter or its state"
    assert result["steps"] == (2.0, 2)
    start, gradients = layouts_problem()
    param = torch.nn.Parameter(start.clone())
    optimizer = descend.Adam([param], **LAYOUTS_OPTIONS, impl="loop")
    reference = []
    for gradient in gradients:
        param.grad = gradient.clone()
        optimizer.step()
        reference.append([param.detach().clone()])
    assert_trajectories(result["trajectory"], reference, "Adam on a sharded parameter")


@pytest.mark.parametrize("name", NOT_ELEMENTWISE)
def test_optimizers_that_are_not_elementwise_refuse_sharded_parameters(pair, name):
    result = unwrap(pair[0]["fsdp", name])
    assert result["error"] == (
        f"param group 0: {name} does not support DTensor parameters (sharded by FSDP2, say), "
        + NOT_ELEMENTWISE[name]
    )
    assert result["state"] == 0
    for actual, expected in zip(result["params"], model_for(BY_NAME[name]).parameters()):
        assert torch.equal(actual, expected.detach())


def test_state_of_plain_tensors_and_of_dtensors_do_not_load_into_each_other(pair):
    """Unsharded optimizer state loaded into FSDP2's DTensor parameters (or the reverse)
    is refused by load_state_dict, naming the way that works, before anything changes;
    that way (set_optimizer_state_dict) then loads it, sharded."""
    result, other = (unwrap(rank["sharding mismatch"], "sharding mismatch") for rank in pair)
    assert (other["into sharded"], other["into plain"]) == (
        result["into sharded"],
        result["into plain"],
    )
    assert other["into sharded unchanged"] and other["into plain unchanged"]
    assert result["into sharded"] == (
        "state_dict state for parameter 0: exp_avg is a plain tensor, the parameter (shape "
        "(3, 4)) a DTensor (sharded by FSDP2, say); load it with "
        "torch.distributed.checkpoint.state_dict.set_optimizer_state_dict, which shards it "
        "as the parameters are (for the state of an unsharded model, as "
        "get_optimizer_state_dict gives it, with "
        "options=StateDictOptions(full_state_dict=True))"
    )
    assert result["into plain"] == (
        "state_dict state for parameter 0: exp_avg is a DTensor (saved from sharded "
        "parameters), the parameter (shape (3, 4)) a plain tensor; gather it first with "
        "torch.distributed.checkpoint.state_dict.get_optimizer_state_dict(model, optimizer, "
        "options=StateDictOptions(full_state_dict=True)), or load it with "
        "set_optimizer_state_dict"
    )
    assert result["into sharded unchanged"] and result["into plain unchanged"]
    assert result["set steps"] == [2]
    assert [kind for kind, _ in result["set"]] == ["DTensor"] * len(result["plain"])
    for (_, loaded), saved in zip(result["set"], result["plain"]):
        assert torch.equal(loaded, saved)


# --------------------------------------------------------------------------------------
# 4. torch.distributed.checkpoint
# --------------------------------------------------------------------------------------


def dcp_reference(name: str, steps: int) -> tuple:
    cls, options = DCP_CASES[name]
    with default_dtype(torch.float64):
        model = Net(scalar=False, complex=True)
        optimizer = cls(model.parameters(), **options)
    return reference_run(model, optimizer, steps), optimizer


DCP_SUITE_CASES = suite_cases(DCP_CASES, DCP_DEFAULT)


@pytest.mark.parametrize(("name", "slow"), DCP_SUITE_CASES)
def test_dcp_checkpoint_resumes_on_two_processes(request, name, slow):
    half = STEPS // 2
    pair = results(request, slow)
    result = ranks_agree(pair, ("dcp", name))
    assert result["group_steps"] == [half]
    reference, _ = dcp_reference(name, STEPS)
    assert_trajectories(result["trajectory"], reference[half:], f"DCP {name}, continued")
    for rank in pair:
        resumed = unwrap(rank["dcp", name])["resumed"]
        for step, (a, b) in enumerate(zip(resumed, result["trajectory"]), start=1):
            assert all(map(torch.equal, a, b)), f"DCP {name}: resumed differs at step {step}"


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled, unavailable or uninit")
@pytest.mark.parametrize(("name", "slow"), DCP_SUITE_CASES)
def test_dcp_checkpoint_of_two_processes_loads_into_one(request, name, slow):
    """The checkpoint the two processes wrote, loaded by a single process without a
    process group into an unsharded model: the same state as single-process training
    at that step, and the same trajectory from there."""
    cls, options = DCP_CASES[name]
    half = STEPS // 2
    path = unwrap(results(request, slow)[0]["dcp", name])["path"]
    with default_dtype(torch.float64):
        model = Net(scalar=False, complex=True)
        optimizer = cls(model.parameters(), **options)
        checkpoint = {
            "model": get_model_state_dict(model),
            "optimizer": get_optimizer_state_dict(model, optimizer),
        }
        dcp.load(checkpoint, checkpoint_id=path)
        set_model_state_dict(model, checkpoint["model"])
        set_optimizer_state_dict(model, optimizer, checkpoint["optimizer"])
    assert [group["step"] for group in optimizer.param_groups] == [half]
    _, reference_optimizer = dcp_reference(name, half)
    assert_same_state(optimizer, reference_optimizer, rtol=RTOL)
    resumed = reference_run(model, optimizer, half, start=half)
    reference, _ = dcp_reference(name, STEPS)
    assert_trajectories(resumed, reference[half:], f"DCP {name}, resumed in one process")


# --------------------------------------------------------------------------------------
# The user guide's examples
# --------------------------------------------------------------------------------------


def test_docs_examples_run_on_two_processes(pair):
    blocks = re.findall(r"^```py\n", DOCS.read_text(), flags=re.M)
    assert len(blocks) >= 4
    for rank, outcome in enumerate(pair):
        assert len(outcome["docs"]) == len(blocks)
        for number, block in enumerate(outcome["docs"], start=1):
            unwrap(block, f"docs/distributed.md py block {number} on rank {rank}")
