"""The compiled path (descend.compiled): each elementwise algorithm's kernel under
torch.compile, per tensor and over flat buffers.

The reference is the loop (``impl="loop"``) on the same model, not flattened, in float64.
The trajectories under torch.optim are covered by the table-driven tests
(tests/test_optimizers.py), which run every implementation in ``impls``; this file checks
what is particular to compiling: flat buffers, layouts, the automatic choice, no
recompilation when a schedule changes a hyperparameter, and the fallback.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch._dynamo.utils import counters

import descend
import descend.compiled
import descend.optimizer
from descend.compiled import Kernel
from tests.test_flat import CASES, IDS, batch, make_model

F64 = torch.float64

# raised inside torch's compiler stack when it first loads, not by descend
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")


def train(model, optimizer, steps: int, scheduler=None) -> None:
    for step in range(steps):
        optimizer.zero_grad(set_to_none=False)
        x, y = batch(step)
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def assert_close(model_a, opt_a, model_b, opt_b) -> None:
    for p, q in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-13, atol=1e-15)
    a, b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert a.keys() == b.keys()
    for index in a:
        assert a[index].keys() == b[index].keys()
        for key in a[index]:
            torch.testing.assert_close(
                torch.as_tensor(b[index][key]),
                torch.as_tensor(a[index][key]),
                rtol=1e-13,
                atol=1e-15,
            )


def test_every_optimizer_with_a_flat_update_has_a_compiled_kernel():
    flat = sorted(
        name
        for name in descend.__all__
        if isinstance(getattr(descend, name), type)
        and issubclass(getattr(descend, name), descend.Optimizer)
        and getattr(descend, name).flat_update
    )
    missing = [
        name
        for name in flat
        if "compiled" not in getattr(descend, name).impls
        or not isinstance(getattr(descend, name).compiled_kernel, Kernel)
    ]
    assert flat and missing == []


@pytest.mark.parametrize(("cls", "options"), CASES, ids=IDS)
@pytest.mark.parametrize("flat", [False, True], ids=["tensors", "flat"])
def test_compiled_update_matches_the_loop_reference(cls, options, flat):
    reference, model = make_model(), make_model()
    if flat:
        descend.flatten(model)
    opt_ref = cls(reference.parameters(), impl="loop", **options)
    opt = cls(model.parameters(), impl="compiled", **options)
    train(reference, opt_ref, 6)
    train(model, opt, 6)
    assert_close(reference, opt_ref, model, opt)


def test_a_scheduled_learning_rate_does_not_recompile():
    model = make_model()
    descend.flatten(model)
    optimizer = descend.AdamW(model.parameters(), lr=0.01, impl="compiled")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    train(model, optimizer, 1, scheduler)  # compiles
    graphs = counters["stats"]["unique_graphs"]
    reference = make_model()
    opt_ref = descend.AdamW(reference.parameters(), lr=0.01, impl="loop")
    ref_scheduler = torch.optim.lr_scheduler.LambdaLR(opt_ref, lambda step: 1 / (1 + step))
    train(reference, opt_ref, 1, ref_scheduler)
    train(model, optimizer, 5, scheduler)
    train(reference, opt_ref, 5, ref_scheduler)
    assert counters["stats"]["unique_graphs"] == graphs
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / 7)
    assert_close(reference, opt_ref, model, optimizer)


@pytest.mark.parametrize(
    "layout",
    ["channels_last", "transposed", "mixed"],
)
def test_tensors_of_any_layout(layout):
    def params():
        generator = torch.Generator().manual_seed(3)
        weight = torch.randn(4, 3, 5, 2, generator=generator, dtype=F64)
        if layout == "channels_last":
            weight = weight.to(memory_format=torch.channels_last)
        elif layout in ("transposed", "mixed"):
            weight = weight.transpose(0, 3)
        return [weight.requires_grad_()]

    ours, reference = params(), params()
    for p in ours + reference:
        grad = torch.linspace(-1, 1, p.numel(), dtype=F64).reshape(p.shape)
        # "mixed": a gradient laid out differently from its parameter
        p.grad = grad.contiguous() if layout == "mixed" else grad.clone()
    opt = descend.Adam(ours, lr=0.1, impl="compiled")
    opt_ref = descend.Adam(reference, lr=0.1, impl="loop")
    for _ in range(3):
        opt.step()
        opt_ref.step()
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-13, atol=1e-15)
    assert ours[0].stride() == reference[0].stride()


def test_the_automatic_choice(monkeypatch):
    model = make_model()
    optimizer = descend.Adam(model.parameters())
    group = optimizer.param_groups[0]
    train(model, optimizer, 1)
    params = list(model.parameters())
    assert optimizer._impl(group, params) == "foreach"  # small: not worth compiling
    monkeypatch.setattr(descend.compiled, "COMPILE_MIN_NUMEL", 10)
    assert optimizer._impl(group, params) == "foreach"  # tensors too small to call one by one
    monkeypatch.setattr(descend.compiled, "CPU_COMPILE_MIN_MEAN_NUMEL", 8)
    assert optimizer._impl(group, params) == "compiled"
    assert optimizer._impl({**group, "impl": "loop"}, params) == "loop"
    sgd = descend.SparseAdam([torch.zeros(3, requires_grad=True)])
    assert sgd.compiled_kernel is None


def test_a_flat_buffer_compiles_when_it_is_big_enough(monkeypatch):
    model = make_model()
    (flat,) = descend.flatten(model)
    optimizer = descend.Adam(model.parameters())
    chosen = []
    update = optimizer._update
    monkeypatch.setattr(
        optimizer,
        "_update",
        lambda group, values, params: (
            chosen.append(optimizer._impl(group, params)) or update(group, values, params)
        ),
    )
    train(model, optimizer, 1)
    monkeypatch.setattr(descend.compiled, "COMPILE_MIN_NUMEL", flat.data.numel())
    train(model, optimizer, 1)
    assert chosen == ["loop", "compiled"]


def test_large_tensors_in_a_flat_buffer_are_updated_whole_when_compiled(monkeypatch):
    monkeypatch.setattr(descend.flat, "CPU_FLAT_MAX_MEAN_NUMEL", 4)
    model = make_model()
    (flat,) = descend.flatten(model)
    assert (
        descend.Adam(model.parameters())._flat_split(0, {"params": list(model.parameters())})[0]
        == []
    )
    optimizer = descend.Adam(model.parameters(), impl="compiled")
    buffers, rest = optimizer._flat_split(0, optimizer.param_groups[0])
    assert buffers == [flat] and rest == []


def test_a_failed_compilation_warns_once_and_runs_eagerly(monkeypatch):
    def broken_compile(function, **options):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler\nmore detail")

        return run

    kernel = Kernel(descend.optim.adam.adam_kernel)
    monkeypatch.setattr(descend.Adam, "compiled_kernel", kernel)
    monkeypatch.setattr(descend.optim.adam, "ADAM_KERNEL", kernel)
    monkeypatch.setattr(torch, "compile", broken_compile)
    model, reference = make_model(), make_model()
    optimizer = descend.Adam(model.parameters(), lr=0.01, impl="compiled")
    opt_ref = descend.Adam(reference.parameters(), lr=0.01, impl="loop")
    with pytest.warns(
        RuntimeWarning,
        match=r"could not compile adam_kernel \(RuntimeError: no C\+\+ compiler\); its updates run "
        "eagerly",
    ) as caught:
        train(model, optimizer, 4)
    assert len([w for w in caught if "could not compile" in str(w.message)]) == 1
    assert not kernel.available and repr(kernel) == "Kernel(adam_kernel, eager)"
    train(reference, opt_ref, 4)
    assert_close(reference, opt_ref, model, optimizer)
    # and the automatic choice no longer picks it
    assert (
        optimizer._impl(
            {**optimizer.param_groups[0], "impl": None}, [p for p in model.parameters()]
        )
        != "compiled"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, optimizer, 1)


@pytest.mark.usefixtures("float64_default")  # float64 step counts, as eager's host math
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")
def test_a_step_under_torch_compile_takes_the_loop():
    model, reference = make_model(), make_model()
    optimizer = descend.Adam(model.parameters(), lr=0.01, impl="compiled")
    opt_ref = descend.Adam(reference.parameters(), lr=0.01, impl="loop")
    step = torch.compile(optimizer.step)
    for i in range(3):
        for m in (model, reference):
            m.zero_grad()
            x, y = batch(i)
            torch.nn.functional.mse_loss(m(x), y).backward()
        step()
        opt_ref.step()
    assert_close(reference, opt_ref, model, optimizer)


def _scale(x: torch.Tensor, c: torch.Tensor, *, a: bool, b: bool, d: bool) -> None:
    x.copy_(x * c[0] + (1 if a else 0) + (2 if b else 0) + (4 if d else 0))


def test_each_dtype_and_set_of_flags_compiles_once_beyond_dynamos_recompile_limit():
    kernel = Kernel(_scale)
    graphs = counters["stats"]["unique_graphs"]
    flags = [
        dict(a=a, b=b, d=d) for a in (False, True) for b in (False, True) for d in (False, True)
    ]
    for dtype in (torch.float64, torch.float32):
        for options in flags:
            x = torch.ones(5, dtype=dtype)
            kernel([[x]], [(2.0,)], **options)
            added = options["a"] + 2 * options["b"] + 4 * options["d"]
            assert torch.equal(x, torch.full((5,), 2.0 + added, dtype=dtype))
    assert counters["stats"]["unique_graphs"] - graphs == 16 == len(kernel._compiled)
    # a new size or a new learning rate reuses them; one element runs eagerly
    for numel, value in ((9, 3.0), (1, 4.0)):
        x = torch.ones(numel, dtype=torch.float32)
        kernel([[x]], [(value,)], a=True, b=True, d=True)
        assert torch.equal(x, torch.full((numel,), value + 7))
    assert counters["stats"]["unique_graphs"] - graphs == 16


class _Subclass(torch.Tensor):
    pass


def test_the_automatic_choice_leaves_tensor_subclasses_and_failed_kernels_alone(monkeypatch):
    monkeypatch.setattr(descend.compiled, "COMPILE_MIN_NUMEL", 1)
    monkeypatch.setattr(descend.compiled, "CPU_COMPILE_MIN_MEAN_NUMEL", 1)
    monkeypatch.setattr(descend.optimizer, "CPU_FOREACH_MAX_MEAN_NUMEL", 1)
    plain = torch.zeros(4, requires_grad=True)
    sub = torch.Tensor._make_subclass(_Subclass, torch.zeros(4), True)
    for param in (plain, sub):
        param.grad = torch.ones(4)
    optimizer = descend.Adam([plain, sub])
    group = optimizer.param_groups[0]
    assert optimizer._impl(group, [plain]) == "compiled"
    assert optimizer._impl(group, [plain, sub]) == "loop"  # "large" tensors, on CPU
    kernel = Kernel(descend.optim.adam.adam_kernel)
    kernel._eager = True  # as after a failed compilation
    monkeypatch.setattr(descend.Adam, "compiled_kernel", kernel)
    assert optimizer._impl(group, [plain]) == "loop"
    assert optimizer._impl({**group, "impl": "compiled"}, [plain]) == "compiled"  # asked for


def test_sgd_and_asgd_compile_flat_buffers_but_not_tensor_by_tensor(monkeypatch):
    monkeypatch.setattr(descend.compiled, "COMPILE_MIN_NUMEL", 1)
    monkeypatch.setattr(descend.compiled, "CPU_COMPILE_MIN_MEAN_NUMEL", 1)
    monkeypatch.setattr(descend.optimizer, "CPU_FOREACH_MAX_MEAN_NUMEL", 1)
    model = make_model()
    params = list(model.parameters())
    for param in params:
        param.grad = torch.zeros_like(param)
    for cls in (descend.SGD, descend.ASGD):
        optimizer = cls(params, lr=0.1)
        assert optimizer._impl(optimizer.param_groups[0], params) == "loop"
    (flat,) = descend.flatten(model)
    assert optimizer._impl(optimizer.param_groups[0], [flat.proxy]) == "compiled"
    assert descend.Adam(params)._impl(optimizer.param_groups[0], params) == "compiled"


@pytest.mark.parametrize(("cls", "options"), CASES, ids=IDS)
def test_a_step_interrupted_while_compiling_changes_nothing(cls, options, monkeypatch):
    def interrupted(self, key, views, c, flags, dense):
        raise KeyboardInterrupt

    reference, model = make_model(), make_model()
    opt_ref = cls(reference.parameters(), impl="loop", **options)
    opt = cls(model.parameters(), impl="compiled", **options)
    train(reference, opt_ref, 2)
    train(model, opt, 1)
    before = copy.deepcopy((list(model.parameters()), opt.state_dict()))
    x, y = batch(1)
    opt.zero_grad(set_to_none=False)
    torch.nn.functional.mse_loss(model(x), y).backward()
    with monkeypatch.context() as patch:
        patch.setattr(Kernel, "_run", interrupted)
        with pytest.raises(KeyboardInterrupt):
            opt.step()
    after = (list(model.parameters()), opt.state_dict())
    for p, q in zip(before[0], after[0]):
        assert torch.equal(p, q)
    assert str(before[1]) == str(after[1])  # the same entries, steps and values
    opt.step()  # the same gradients: the step it did not take
    assert_close(reference, opt_ref, model, opt)


def _adam_row() -> tuple[float, ...]:
    """A coefficient row of descend.optim.adam's kernel (step 1, lr 1e-2)."""
    return tuple(
        descend.optim.adam.adam_coefficients(
            1,
            lr=1e-2,
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            decoupled_weight_decay=False,
            maximize=False,
        )
    )


def _adam_tensors(numel: int, seed: int, layout=lambda t: t) -> list:
    generator = torch.Generator().manual_seed(seed)
    param, grad = (layout(torch.randn(numel, generator=generator, dtype=F64)) for _ in "pg")
    return [param, grad, torch.zeros_like(param), torch.zeros_like(param), None]


def _adam_eager(tensors: list, steps: int) -> None:
    c = torch.tensor(_adam_row(), dtype=F64)
    for _ in range(steps):
        descend.optim.adam.adam_kernel(*tensors, c, l2=False, nesterov=False)


def _counting_dynamo(kernel: Kernel) -> list[int]:
    """Wrap every compiled entry point's torch.compile callable with a call counter."""
    calls = [0]
    for entry in kernel._compiled.values():
        dynamo = entry._dynamo

        def counted(*args, _dynamo=dynamo, **kwargs):
            calls[0] += 1
            return _dynamo(*args, **kwargs)

        entry._dynamo = counted
    return calls


@pytest.mark.parametrize("first", [10, 1000], ids=["first-as-long-as-the-row", "first-longer"])
def test_dense_tensors_call_the_compiled_graph_directly_after_compiling(first):
    # torch.compile's guards cost ~20 us per call: once the graph for dense 1-D tensors
    # exists, later calls of any size skip them. The row has 10 coefficients: a first
    # tensor of 10 elements must not get a graph that takes one size for both.
    kernel = Kernel(descend.optim.adam.adam_kernel)
    sizes = [first, 1000, 10, 7, 2, 12345]
    tensors = [_adam_tensors(numel, seed) for seed, numel in enumerate(sizes)]
    expected = [[t if t is None else t.clone() for t in group] for group in tensors]
    for group in expected:
        _adam_eager(group, steps=3)
    lists = [[group[k] for group in tensors] for k in range(4)] + [None]
    kernel(lists, [_adam_row()] * len(sizes), l2=False, nesterov=False)
    (entry,) = kernel._compiled.values()
    assert entry._direct is not None
    assert len(entry._graphs) == 1
    calls = _counting_dynamo(kernel)
    for _ in range(2):
        kernel(lists, [_adam_row()] * len(sizes), l2=False, nesterov=False)
    assert calls == [0]
    for group, reference in zip(tensors, expected):
        for tensor, want in zip(group[:4], reference[:4]):
            torch.testing.assert_close(tensor, want, rtol=1e-13, atol=1e-15)


def test_other_layouts_and_shared_storage_go_through_torch_compile():
    kernel = Kernel(descend.optim.adam.adam_kernel)
    row = [_adam_row()]
    warm = _adam_tensors(100, 0)
    kernel([[t] if t is not None else None for t in warm], row, l2=False, nesterov=False)
    calls = _counting_dynamo(kernel)
    # a strided 1-D layout, and a gradient sharing the parameter's storage
    strided = _adam_tensors(200, 1, layout=lambda t: t[::2])
    buffer = torch.randn(200, dtype=F64, generator=torch.Generator().manual_seed(2))
    shared = [buffer[:100], buffer[100:], torch.zeros(100, dtype=F64), torch.zeros(100, dtype=F64)]
    shared.append(None)
    for tensors in (strided, shared):
        expected = [t if t is None else t.clone() for t in tensors]
        _adam_eager(expected, steps=1)
        kernel([[t] if t is not None else None for t in tensors], row, l2=False, nesterov=False)
        for tensor, want in zip(tensors[:4], expected[:4]):
            torch.testing.assert_close(tensor, want, rtol=1e-13, atol=1e-15)
    assert calls == [2]


def test_a_direct_call_the_graph_refuses_falls_back_to_torch_compile():
    # the graph checks its inputs' sizes before it writes anything: a recipe that no
    # longer fits (a torch whose graphs take their inputs differently) costs one
    # refused call, then torch.compile serves the kernel again
    kernel = Kernel(descend.optim.adam.adam_kernel)
    row = [_adam_row()]
    tensors = _adam_tensors(100, 0)
    kernel([[t] if t is not None else None for t in tensors], row, l2=False, nesterov=False)
    (entry,) = kernel._compiled.values()
    graph, recipe = entry._direct
    # the parameter where the coefficients go: not of the row's length
    entry._direct = graph, [(0 if (i, read) == (5, None) else i, read) for i, read in recipe]
    expected = [t if t is None else t.clone() for t in tensors]
    _adam_eager(expected, steps=1)
    kernel([[t] if t is not None else None for t in tensors], row, l2=False, nesterov=False)
    for tensor, want in zip(tensors[:4], expected[:4]):
        torch.testing.assert_close(tensor, want, rtol=1e-13, atol=1e-15)
    assert entry._direct is None
