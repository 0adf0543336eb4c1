"""Tests of ``descend bench`` (:mod:`descend.cli.bench`) on tiny workloads.

The harness's numbers are checked against their definitions (ratio to the best torch
variant, ratio to the bandwidth floor), the bytes-per-parameter table against the state
the optimizers actually keep, the triad against its formula, and every variant's
parameters after the timed steps against the others': the benchmark times the same work.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys

import pytest
import torch

import descend
from descend.cli import bench
from descend.cli.spec import SpecError

TINY = {"large": [(12, 5), (7,), (4, 3, 2, 2)], "many-small": [(6,), (2, 3), (3, 2, 2)] * 3}


@pytest.fixture
def tiny(monkeypatch):
    """Tiny workloads and a 1 MiB triad, so that a whole run takes a second or two."""
    monkeypatch.setitem(bench.WORKLOADS, "large", lambda quick: TINY["large"])
    monkeypatch.setitem(bench.WORKLOADS, "many-small", lambda quick: TINY["many-small"])
    monkeypatch.setitem(bench.TRIAD_BYTES, "cpu", 2**20)


def run(*argv: str) -> tuple[int, str, str]:
    """``descend bench *argv``: exit code, stdout and stderr, through the command line
    (``descend.cli.main`` once bench is registered there, else a parser built the same way)."""
    from descend import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if bench.register in cli.COMMANDS:
                code = cli.main(["bench", *argv])
            else:
                parser = cli._Parser(prog="descend")
                bench.register(parser.add_subparsers(dest="command"))
                args = parser.parse_args(["bench", *argv])
                try:
                    code = args.run(args)
                except SpecError as error:
                    print(f"descend: error: {error}", file=sys.stderr)
                    code = 2
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def fake_bandwidth(gb_per_s: float = 10.0) -> bench.Bandwidth:
    return bench.Bandwidth(gb_per_s, 0.75 * gb_per_s, 2**20, 1, [1.0], True)


# --------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------


def test_measure_reports_every_variant_with_its_ratios():
    shapes = TINY["large"]
    skipped: list[bench.Skipped] = []
    bandwidth = fake_bandwidth(7.0)
    results = bench.measure(
        "Adam", "tiny", shapes, repeats=3, warmup=0, bandwidth=bandwidth, skipped=skipped
    )
    offered = {v.name for v in bench.VARIANTS if v.offered()}
    assert {r.implementation for r in results} | {s.implementation for s in skipped} == offered
    assert {"descend auto", "descend loop", "descend foreach", "torch for-loop"} <= {
        r.implementation for r in results
    }
    parameters = sum(math.prod(s) for s in shapes)
    floor_ms = 28 * parameters / 7e9 * 1e3
    best_torch = min(r.ms_per_step for r in results if r.implementation.startswith("torch"))
    for r in results:
        assert r.ms_per_step > 0 and len(r.samples_ms) == 3
        assert r.ms_per_step == sorted(r.samples_ms)[1]
        assert r.ratio_vs_best_torch == r.ms_per_step / best_torch
        assert r.floor_ms == pytest.approx(floor_ms, rel=1e-12)
        assert r.x_floor == r.ms_per_step / r.floor_ms
        assert r.first_step_ms > 0
        # Adam's state: two moments per element, plus a 0-d step count per tensor (flat
        # buffers may pad each tensor for alignment)
        slack = 8 * len(shapes) + (
            2 * 4 * 64 * len(shapes) if r.implementation.endswith("flat") else 0
        )
        assert 8 * parameters <= r.state_bytes <= 8 * parameters + slack
        assert r.step_peak_bytes is not None and r.step_peak_bytes >= 0
        assert r.peak_bytes == r.state_bytes + r.step_peak_bytes
    assert min(r.ratio_vs_best_torch for r in results if r.implementation.startswith("torch")) == 1


@pytest.mark.parametrize("optimizer", list(bench.OPTIMIZERS))
def test_every_variant_does_the_same_work(optimizer):
    finals: dict[str, list[torch.Tensor]] = {}
    skipped: list[bench.Skipped] = []
    shapes = TINY["large"]
    bench.measure(
        optimizer, "tiny", shapes, repeats=2, warmup=1, skipped=skipped, final_params=finals
    )
    assert "torch for-loop" in finals and "descend loop" in finals
    reference = finals["torch for-loop"]
    start = [value for value, _ in bench.make_params(shapes)]
    assert not all(torch.equal(a, b) for a, b in zip(reference, start))  # it did move
    for name, params in finals.items():
        assert [p.shape for p in params] == [torch.Size(s) for s in shapes], name
        for got, want in zip(params, reference):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
    # only torch lacks implementations (fused for most optimizers), and descend lacks a
    # compiled kernel for the algorithms whose update is not elementwise (Adafactor)
    compiled = "compiled" in bench.OPTIMIZERS[optimizer][0].impls
    for s in skipped:
        assert s.implementation == "torch fused" or (
            s.implementation == "descend compiled" and not compiled
        ), s


def test_cpu_step_peak_counts_the_temporaries():
    def step():
        a = torch.ones(250_000)  # 1 MB
        b = torch.ones(250_000)
        del a, b
        c = torch.ones(100_000)
        del c

    peak = bench.cpu_step_peak(step)
    assert peak is not None
    assert 2_000_000 <= peak < 2_100_000


def test_state_bytes_counts_each_storage_once():
    param = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    buffer = torch.zeros(30)
    optimizer.state[param] = {"a": buffer[:10], "b": buffer[10:], "step": torch.tensor(1.0)}
    assert bench.state_bytes(optimizer) == 30 * 4 + 4


# --------------------------------------------------------------------------------------
# Bytes per parameter
# --------------------------------------------------------------------------------------


def test_documented_floors():
    assert bench.TRAFFIC["SGD"].bytes_per_param == 20  # read p, g, b; write p, b
    assert bench.TRAFFIC["Adam"].bytes_per_param == 28  # read p, g, m, v; write p, m, v
    assert bench.TRAFFIC["AdamW"].bytes_per_param == 28
    assert bench.TRAFFIC["Adagrad"].bytes_per_param == 20
    assert bench.TRAFFIC["RMSprop"].bytes_per_param == 20
    assert bench.TRAFFIC["ASGD"].bytes_per_param == 16
    assert bench.floor_bytes("Adam", [(4, 5), (3,)]) == 28 * 23
    # Adafactor: 24 B on factored tensors, 32 B on vectors (full second moment)
    assert bench.floor_bytes("Adafactor", [(4, 5), (3,)]) == 24 * 20 + 32 * 3


def per_element_state(optimizer: str, shape: tuple[int, ...]) -> tuple[set[str], dict]:
    """Names of the per-element state tensors ``optimizer`` keeps for a tensor of
    ``shape`` after two steps with the benchmark's options, and that state. The loop
    reference runs: it moves only the traffic the algorithm needs (ASGD's foreach path
    reads ``ax`` even where the loop only copies ``p`` into it)."""
    descend_class, _, options = bench.OPTIMIZERS[optimizer]
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(shape, generator=generator).requires_grad_()
    param.grad = torch.randn(shape, generator=generator)
    opt = descend_class([param], **options, impl="loop")
    opt.step()
    opt.step()
    state = opt.state[param]
    names = {
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor) and value.shape == param.shape
    }
    return names, {"param": param, **state}


# State written each step but never read at the benchmark's defaults
WRITE_ONLY = {"ASGD": {"ax"}}


@pytest.mark.parametrize("optimizer", list(bench.OPTIMIZERS))
@pytest.mark.parametrize("shape", [(6, 5), (7,)], ids=["matrix", "vector"])
def test_floor_covers_the_state_the_optimizer_keeps(optimizer, shape):
    names, state = per_element_state(optimizer, shape)
    t = bench.traffic(optimizer, shape)
    assert "param" in t.reads and "param" in t.writes and "grad" in t.reads
    assert set(t.reads) | set(t.writes) <= {"param", "grad"} | names, "a name not in the state"
    assert names <= set(t.writes), f"state that changes every step must be written: {names}"
    write_only = names - set(t.reads)
    assert write_only == WRITE_ONLY.get(optimizer, set())
    assert t.bytes_per_param >= 4 * (2 + 2 * len(names)) + 4 - 4 * len(write_only)
    assert t.bytes_per_param == 4 * (len(t.reads) + len(t.writes))
    if optimizer == "ASGD":  # ax only copies p at the defaults: written, not read
        torch.testing.assert_close(state["ax"], state["param"].detach(), rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Bandwidth
# --------------------------------------------------------------------------------------


def test_triad_computes_b_plus_s_c():
    b, c = torch.randn(1000), torch.randn(1000)
    a = torch.empty(1000)
    assert bench.triad(a, b, c, 2.5) is a
    torch.testing.assert_close(a, b + 2.5 * c)


def test_bandwidth_is_measured(monkeypatch):
    monkeypatch.setitem(bench.TRIAD_BYTES, "cpu", 2**20)
    bandwidth = bench.measure_bandwidth(torch.device("cpu"), repeats=3)
    assert bandwidth.verified
    assert 0 < bandwidth.gb_per_s < math.inf
    assert bandwidth.array_bytes == 2**20 and len(bandwidth.samples_ms) == 3
    seconds = sorted(bandwidth.samples_ms)[1] / 1e3
    # on CPU: read b and c, write a, and read a before writing it (write-allocate)
    assert bandwidth.write_allocate_counted and bandwidth.bytes_per_element == 16
    assert bandwidth.gb_per_s == pytest.approx(4 * 2**20 / seconds / 1e9)
    assert bandwidth.stream_gb_per_s == pytest.approx(3 * 2**20 / seconds / 1e9)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def test_command_prints_the_table_and_writes_json(tiny, tmp_path):
    path = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    code, out, err = run(
        "--optimizers", "all", "--repeats", "2", "--warmup", "0", "--threads", "1",
        "--json", str(path),
    )  # fmt: skip
    assert code == 0, err
    assert torch.get_num_threads() == threads  # restored
    first = out.splitlines()[0]
    for word in ("torch", "descend", "device cpu", "threads 1", "GB/s", "load average"):
        assert word in first
    for name in bench.OPTIMIZERS:
        assert name in out
    for column in ("ms/step", "vs torch", "x floor", "peak MB", "descend foreach"):
        assert column in out
    data = json.loads(path.read_text())
    assert set(data) == {"meta", "bandwidth", "workloads", "floors", "results", "unavailable"}
    assert data["meta"]["threads"] == 1 and data["meta"]["device"] == "cpu"
    assert {"torch", "descend", "date", "load_average_start", "memory"} <= set(data["meta"])
    assert data["bandwidth"]["gb_per_s"] > 0 and data["bandwidth"]["verified"]
    assert data["bandwidth"]["write_allocate_counted"] is True
    assert data["bandwidth"]["stream_gb_per_s"] == pytest.approx(
        0.75 * data["bandwidth"]["gb_per_s"]
    )
    assert len(data["floors"]) == 2 * len(bench.OPTIMIZERS)
    assert {(r["optimizer"], r["workload"]) for r in data["results"]} == {
        (o, w) for o in bench.OPTIMIZERS for w in ("large", "many-small")
    }
    for r in data["results"]:
        assert r["ms_per_step"] > 0 and r["x_floor"] > 0 and r["peak_bytes"] >= r["state_bytes"]
    fused = {u["optimizer"] for u in data["unavailable"] if u["implementation"] == "torch fused"}
    assert "NAdam" in fused and "not available: torch fused" in out


def test_default_optimizers_and_case_insensitive_names(tiny):
    code, out, _ = run("--workload", "many-small", "--repeats", "1", "--warmup", "0")
    assert code == 0
    assert "SGD" in out and "AdamW" in out and "RMSprop" not in out
    assert bench.optimizer_names(["adamw", "ALL"])[:2] == ["AdamW", "SGD"]
    assert len(bench.optimizer_names(["all", "adam"])) == 12


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--optimizers", "Adamm"], "unknown optimizer 'Adamm'"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--device", "tpu"], "unknown device"),
        (["--json", "/no/such/folder/x.json"], "does not exist"),
        (["--workload", "huge"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message):
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line():
    code, _, err = run("--device", "cuda")
    assert code == 2 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1


def test_main_for_the_script(tiny, capsys):
    assert bench.main(["--optimizers", "nope"]) == 2
    assert "descend bench: error: --optimizers" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_variants_agree_and_report_memory():
    finals: dict[str, list[torch.Tensor]] = {}
    device = torch.device("cuda")
    results = bench.measure(
        "Adam", "tiny", TINY["large"], device=device, repeats=2, warmup=0, final_params=finals
    )
    assert "torch fused" in {r.implementation for r in results}
    for r in results:
        assert r.ms_per_step > 0 and r.step_peak_bytes is not None
    for params in finals.values():
        for got, want in zip(params, finals["torch for-loop"]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    bandwidth = bench.measure_bandwidth(device, repeats=2)
    assert bandwidth.verified and bandwidth.gb_per_s > 0


def test_flat_variant_is_offered_when_descend_has_flatten():
    flat = next(v for v in bench.VARIANTS if v.flat)
    assert flat.offered() == hasattr(descend, "flatten")


def test_a_failing_flatten_makes_the_flat_variant_unavailable(monkeypatch):
    def broken(params):
        raise IndexError("not today")

    monkeypatch.setattr(descend, "flatten", broken, raising=False)
    skipped: list[bench.Skipped] = []
    results = bench.measure("SGD", "tiny", TINY["large"], repeats=1, warmup=0, skipped=skipped)
    assert "descend flat" not in {r.implementation for r in results}
    (flat,) = [s for s in skipped if s.implementation == "descend flat"]
    assert flat.reason == "descend.flatten failed: IndexError: not today"


def test_without_flatten_there_is_no_flat_variant(monkeypatch):
    monkeypatch.delattr(descend, "flatten", raising=False)
    skipped: list[bench.Skipped] = []
    results = bench.measure("SGD", "tiny", TINY["large"], repeats=1, warmup=0, skipped=skipped)
    names = {r.implementation for r in results} | {s.implementation for s in skipped}
    assert "descend flat" not in names and "descend auto" in names
