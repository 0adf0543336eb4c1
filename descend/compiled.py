"""Compiled updates: an algorithm's whole elementwise update in one pass over memory.

An eager update makes several passes over each tensor (one per torch op), and an
optimizer step is memory-bound, so each pass costs about as much as the arithmetic of the
whole update. Each elementwise algorithm therefore also has a *kernel*: its update of one
tensor written as tensor expressions of the parameter, its gradient and its state, with
every number the update needs in a row of *coefficients*, a float64 tensor. The
coefficients hold the hyperparameters and the step-dependent terms (bias corrections,
say), computed on the host in float64 from the loop reference's own formulas.
:class:`Kernel` compiles the kernel with ``torch.compile`` (C++ on CPU, Triton on GPU)
once per process for each dtype, device and set of boolean options in use, which fuses
it into a single loop, and runs it on each tensor, or on each flat buffer
(:mod:`descend.flat`) at once:

- the coefficients are data, not constants of the compiled code, so a schedule that
  changes the learning rate at every step never recompiles;
- they are computed before the kernel runs, so it does no per-element scalar math (with
  the bias corrections computed inside, a compiled Adam was compute-bound, at about twice
  the time per element);
- boolean options (AMSGrad, L2 weight decay, ...) are compiled in: each combination in
  use is compiled once.

Where compilation fails (no C++ compiler, an unsupported platform), the first call warns
once and the kernel runs eagerly from then on: the same math, more passes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from descend.flat import FLAT_ATTRIBUTE, FLAT_PROXY

COMPILE_DEVICES = frozenset({"cpu", "cuda"})
"""Device types whose compiled kernels descend tests (CPU) or that inductor targets with
float64 support (CUDA); elsewhere (MPS has no float64) ``impl=None`` does not compile."""
COMPILE_MIN_NUMEL = 1 << 20
"""``impl=None`` compiles a group's update only when its parameters hold at least this
many elements: compiling takes seconds once per process, which smaller problems never
earn back."""
CPU_COMPILE_MIN_MEAN_NUMEL = 16_384
"""``impl=None`` compiles the update of CPU tensors outside flat buffers, one call per
tensor, only when they hold at least this many elements on average (each call costs
tens of microseconds on the host)."""
_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)


class CompiledUpdates:
    """What :class:`descend.Optimizer` knows of compiled updates: the class's kernel, and
    when ``impl=None`` takes it."""

    compiled_kernel: ClassVar[Kernel | None] = None
    """The kernel of ``impl="compiled"``, for an elementwise update; its class lists
    ``"compiled"`` in ``impls``."""
    compile_tensor_by_tensor: ClassVar[bool] = True
    """Whether ``impl=None`` compiles the update of large CPU tensors that are not in flat
    buffers, one call per tensor: False where the eager loop is as fast (an update of
    one or two passes, such as SGD's, gains less than the host cost of each call)."""

    def _compiles(self, group: dict[str, Any], params: Sequence[torch.Tensor]) -> bool:
        """Whether the update of ``params`` (flat proxies among them) takes the compiled
        kernel (:mod:`descend.compiled`): always under ``impl="compiled"`` (except while
        torch.compile traces the step); under ``impl=None`` where it is worth it.

        It is worth it where each call has enough work, since each costs tens of
        microseconds on the host: on a flat buffer, or on CPU tensors of at least
        ``CPU_COMPILE_MIN_MEAN_NUMEL`` elements on average where the class's
        ``compile_tensor_by_tensor`` allows (on an accelerator the multi-tensor path
        launches fewer kernels); and when the group holds at least
        ``COMPILE_MIN_NUMEL`` elements, so that the seconds compiling takes are earned
        back. Never for tensor subclasses (DTensor, say), on devices outside
        ``COMPILE_DEVICES``, or once compiling this kernel has failed.
        """
        kernel = self.compiled_kernel
        chosen = group.get("impl")
        if kernel is None or chosen not in (None, "compiled") or torch.compiler.is_compiling():
            return False
        if chosen == "compiled":
            return True
        if not kernel.available or not params:
            return False
        numel = sum(p.numel() for p in params)
        if numel < COMPILE_MIN_NUMEL or any(
            type(p) not in _PLAIN_TENSORS or p.device.type not in COMPILE_DEVICES for p in params
        ):
            return False
        if any(getattr(p, FLAT_ATTRIBUTE, None) is FLAT_PROXY for p in params):
            return True
        mean_numel = numel / len(params)
        return (
            self.compile_tensor_by_tensor
            and params[0].device.type == "cpu"
            and mean_numel >= CPU_COMPILE_MIN_MEAN_NUMEL
        )


class Kernel:
    """An elementwise update of one tensor, compiled on first use.

    ``function(*tensors, coefficients, **flags)`` updates its tensors (parameter,
    gradient, state, in that order; None for state an option leaves out) in place from
    the float64 tensor ``coefficients``; ``flags`` are booleans compiled into the code.
    """

    def __init__(self, function: Callable[..., None]) -> None:
        self.function = function
        self.name = function.__name__
        self._compiled: dict[tuple, Callable[..., None]] = {}
        self._eager = False

    def __repr__(self) -> str:
        state = "eager" if self._eager else f"{len(self._compiled)} compiled"
        return f"Kernel({self.name}, {state})"

    @property
    def available(self) -> bool:
        """False once compiling this kernel failed (and it runs eagerly)."""
        return not self._eager

    def __call__(
        self,
        tensors: Sequence[Sequence[Tensor] | None],
        rows: Sequence[Sequence[float]],
        advance: Sequence[Tensor] = (),
        **flags: bool,
    ) -> None:
        """Update ``tensors[k][i]`` for every tensor ``i`` with coefficients ``rows[i]``,
        then add one to each step count in ``advance``.

        ``tensors`` are parallel lists (parameters, gradients, each state), None for a
        state left out. The i-th tensors of the lists must have the same shape. While
        torch.compile traces the caller, the kernel is traced into the caller's graph;
        a tensor of one element runs it eagerly (torch.compile would compile a variant
        just for that size).
        """
        if not tensors[0]:
            return
        absent = tuple(lst is None for lst in tensors)
        eager = self._eager or torch.compiler.is_compiling()
        coefficients: dict[tuple[tuple[float, ...], torch.device], Tensor] = {}
        with torch.no_grad():
            for i in range(len(tensors[0])):
                param = tensors[0][i]
                row = (tuple(rows[i]), param.device)
                c = coefficients.get(row)
                if c is None:
                    c = torch.tensor(row[0], dtype=torch.float64).to(param.device)
                    coefficients[row] = c
                views = _one_dimensional([None if lst is None else lst[i] for lst in tensors])
                if eager or views[0].numel() <= 1:
                    self.function(*views, c, **flags)
                else:
                    key = (param.dtype, str(param.device), absent, *sorted(flags.items()))
                    eager = not self._run(key, views, c, flags)
        if advance:
            torch._foreach_add_(list(advance), 1)

    def _run(self, key: tuple, views: list, c: Tensor, flags: dict[str, bool]) -> bool:
        """Run the compiled kernel for ``key``, compiling it first if needed; on failure
        warn, run eagerly, and return False."""
        compiled = self._compiled.get(key)
        if compiled is not None:
            compiled(*views, c, **flags)
            return True
        try:
            compiled = torch.compile(_entry_point(self.function, len(self._compiled)), dynamic=True)
            compiled(*views, c, **flags)
        except Exception as error:  # compilation failed: no compiler, say
            self._eager = True
            warnings.warn(
                f"descend could not compile {self.name} ({type(error).__name__}: "
                f"{_first_line(error)}); its updates run eagerly from now on",
                RuntimeWarning,
                stacklevel=4,
            )
            self.function(*views, c, **flags)
            return False
        self._compiled[key] = compiled
        return True


def _entry_point(function: Callable[..., None], number: int) -> Callable[..., None]:
    """A new function that calls ``function``, for one dtype, device, set of flags and
    set of state tensors given.

    torch.compile keeps a function's compiled variants with its code object, and stops
    compiling new ones after ``torch._dynamo.config.recompile_limit`` (8) of them, running
    the function eagerly from then on. Each entry point has its own code object, so each
    holds one variant for the dense tensors of any size (one more for each rank of
    tensors that are not dense, which are passed at their own shape) however many dtypes
    and flags a process uses.
    """

    def entry(*args: Any, **flags: bool) -> None:
        function(*args, **flags)

    entry.__code__ = entry.__code__.replace(co_name=f"{function.__name__}_{number}")
    return entry


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _one_dimensional(tensors: list[Tensor | None]) -> list[Tensor | None]:
    """The tensors as 1-D views over the same memory when they are all dense with the
    same strides (contiguous, channels-last, ...), so that one compiled loop serves every
    shape; otherwise as they are. Detached: a parameter's view would require grad, and
    torch.compile would compile another variant for it."""
    present = [t for t in tensors if t is not None]
    strides = present[0].stride()
    detached = [None if t is None else t.detach() for t in tensors]
    if any(t.stride() != strides for t in present):
        return detached
    if present[0].is_contiguous():
        return [None if t is None else t.view(-1) for t in detached]
    if _dense(present[0]):
        numel = present[0].numel()
        return [None if t is None else t.as_strided((numel,), (1,)) for t in detached]
    return detached


def _dense(tensor: Tensor) -> bool:
    """Whether the tensor's elements fill a block of memory with no gaps or overlaps
    (so a 1-D view with stride 1 from its start covers exactly them)."""
    if tensor.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(tensor.shape, tensor.stride()), key=lambda item: item[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def step_rows(
    steps: Sequence[Tensor], row: Callable[[float], Sequence[float]] | Sequence[float]
) -> list[tuple[float, ...]]:
    """The coefficient rows of each parameter's coming step: ``row(t)`` where ``t`` is
    its step count plus one (the loop reference's count for this step), one call per
    distinct count; or ``row`` itself for each, when it does not depend on the step (then
    no count is read back from its device). The counts are not advanced here: the
    kernel call advances them (``advance=``) once the update is done, so a step that
    fails while compiling leaves them as they were."""
    if not steps:
        return []
    if not callable(row):
        return [tuple(map(float, row))] * len(steps)
    rows: dict[float, tuple[float, ...]] = {}
    return [
        rows.get(t) or rows.setdefault(t, tuple(map(float, row(t)))) for t in step_counts(steps)
    ]


def step_counts(steps: Sequence[Tensor]) -> list[float]:
    """Each step count plus one, as the loop reference counts this step (in the count's
    own dtype), without changing the counts."""
    try:
        return (torch.stack(list(steps)) + 1).tolist()
    except RuntimeError:  # counts on different devices
        return [(step + 1).item() for step in steps]


def host(value: Any) -> float:
    """A hyperparameter as a Python float (it may be a one-element tensor)."""
    return float(value.item() if isinstance(value, Tensor) else value)
