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
  use is compiled once;
- once compiled, the kernel is called on dense tensors without torch.compile's guards
  (see :class:`_Compiled`), which would cost more on the host than a tensor of 10^4
  elements takes to update.

Where compilation fails (no C++ compiler, an unsupported platform), the first call warns
once and the kernel runs eagerly from then on: the same math, more passes.
"""

from __future__ import annotations

import functools
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
        flag_key = tuple(sorted(flags.items()))
        eager = self._eager or torch.compiler.is_compiling()
        coefficients: dict[tuple[tuple[float, ...], torch.device], Tensor] = {}
        keys: dict[tuple[torch.dtype, torch.device], tuple] = {}
        with torch.no_grad():
            for i, param in enumerate(tensors[0]):
                device = param.device
                row = (tuple(rows[i]), device)
                c = coefficients.get(row)
                if c is None:
                    c = torch.tensor(row[0], dtype=torch.float64).to(device)
                    if not eager:  # one graph for every size of tensor, none for its size
                        torch._dynamo.mark_static(c)
                    coefficients[row] = c
                views, dense = _one_dimensional(
                    [None if lst is None else lst[i] for lst in tensors]
                )
                if eager or views[0].numel() <= 1:
                    self.function(*views, c, **flags)
                    continue
                key = keys.get((param.dtype, device))
                if key is None:
                    key = (param.dtype, str(device), absent, flag_key)
                    keys[param.dtype, device] = key
                eager = not self._run(key, views, c, flags, dense)
        if advance:
            torch._foreach_add_(list(advance), 1)

    def _run(self, key: tuple, views: list, c: Tensor, flags: dict[str, bool], dense: bool) -> bool:
        """Run the compiled kernel for ``key``, compiling it first if needed; on failure
        warn, run eagerly, and return False. ``dense``: the views are dense and 1-D."""
        compiled = self._compiled.get(key)
        if compiled is not None:
            compiled(views, c, flags, dense)
            return True
        try:
            compiled = _Compiled(_entry_point(self.function, len(self._compiled)))
            compiled(views, c, flags, dense)
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


class _Compiled:
    """One entry point under ``torch.compile``, and, once it has compiled its graph for
    dense 1-D tensors, a direct call of that graph.

    A call through torch.compile first runs dynamo's guards and wrappers, which cost
    about 20 microseconds on the host, as long as Adam takes on 40,000 elements. Where the
    guards can only pass, the compiled graph is called directly instead: the kernel's
    inputs here are always of the dtype, device and state tensors of the entry point's
    key, detached and without autograd, and the direct call is used only for dense 1-D
    tensors of at least two elements on distinct storage, the inputs the graph was
    compiled for. The graph's own checks of sizes and strides still run. Anything else
    (another layout, a graph break, a torch whose internals differ) goes through
    torch.compile as before.
    """

    def __init__(self, entry: Callable[..., None]) -> None:
        self._graphs: list[tuple[Callable[..., Any], list | None]] = []
        compile_fx = _inductor_compile()
        backend: Any = "inductor" if compile_fx is None else self._capture(compile_fx)
        self._dynamo = torch.compile(entry, dynamic=True, backend=backend)
        self._direct: tuple[Callable[..., Any], list] | None = None

    def __call__(self, views: list, c: Tensor, flags: dict[str, bool], dense: bool) -> None:
        """Update ``views`` (1-D and dense where ``dense``) with coefficients ``c``."""
        direct = self._direct
        args = (*views, c)
        dense = dense and _distinct_storage(views)
        if direct is not None and dense:
            graph, recipe = direct
            try:
                graph(*[args[i] if read is None else read(args[i]) for i, read in recipe])
                return
            except AssertionError:  # the graph's size checks, before it changes anything
                self._direct = None
        graphs = len(self._graphs)
        self._dynamo(*args, **flags)
        if direct is None and dense and len(self._graphs) == graphs + 1:
            graph, recipe = self._graphs[-1]
            if recipe is not None:
                self._direct = graph, recipe

    def _capture(self, compile_fx: Callable[..., Any]) -> Callable[..., Any]:
        def backend(graph_module: torch.fx.GraphModule, example_inputs: list) -> Any:
            graph = compile_fx(graph_module, example_inputs)
            self._graphs.append((graph, _recipe(graph_module)))
            return graph

        return backend


def _inductor_compile() -> Callable[..., Any] | None:
    """Inductor's compiler of one dynamo graph (the ``"inductor"`` backend), or None if
    this torch does not have it where descend looks."""
    try:
        from torch._inductor.compile_fx import compile_fx
    except ImportError:
        return None
    return compile_fx


def _recipe(graph_module: torch.fx.GraphModule) -> list | None:
    """How to build the graph's inputs from the entry point's arguments: for each input,
    the argument's index and None (the argument itself) or the function reading the
    size, stride or storage offset it stands for; None when an input comes from
    anything else, or the graph returns values (which dynamo's code would use)."""
    try:
        from torch._dynamo.source import GetItemSource, LocalSource, TensorPropertySource
    except ImportError:
        return None
    readers = {"SIZE": Tensor.size, "STRIDE": Tensor.stride}
    recipe: list = []
    for node in graph_module.graph.nodes:
        if node.op == "output":
            if node.args != ((),):
                return None
            continue
        if node.op != "placeholder":
            continue
        source = getattr(node.meta.get("grapharg"), "source", None)
        read = None
        if isinstance(source, TensorPropertySource):
            name = source.prop.name
            if name == "STORAGE_OFFSET":
                read = Tensor.storage_offset
            elif name in readers:
                read = functools.partial(_dimension, readers[name], source.idx)
            else:
                return None
            source = source.base
        if not (
            isinstance(source, GetItemSource)
            and isinstance(source.base, LocalSource)
            and source.base.local_name == "args"
            and isinstance(source.index, int)
        ):
            return None
        recipe.append((source.index, read))
    return recipe


def _dimension(read: Callable[[Tensor, int], int], dim: int, tensor: Tensor) -> int:
    return read(tensor, dim)


def _distinct_storage(views: list) -> bool:
    """Whether no two of the tensors share storage (dynamo compiles aliased inputs
    apart)."""
    storages = [t.untyped_storage().data_ptr() for t in views if t is not None]
    return len(set(storages)) == len(storages)


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


def _one_dimensional(tensors: list[Tensor | None]) -> tuple[list[Tensor | None], bool]:
    """The tensors as 1-D views over the same memory when they are all dense with the
    same strides (contiguous, channels-last, ...), so that one compiled loop serves every
    shape; otherwise as they are. Detached: a parameter's view would require grad, and
    torch.compile would compile another variant for it. The flag says which it was."""
    present = [t for t in tensors if t is not None]
    if all(t.is_contiguous() for t in present):
        return [None if t is None else t.detach().view(-1) for t in tensors], True
    strides = present[0].stride()
    detached = [None if t is None else t.detach() for t in tensors]
    if any(t.stride() != strides for t in present) or not _dense(present[0]):
        return detached, False
    numel = present[0].numel()
    return [None if t is None else t.as_strided((numel,), (1,)) for t in detached], True


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
