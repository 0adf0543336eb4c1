"""Hostile inputs, drawn by hypothesis: what descend accepts, and how it refuses the rest.

Each fuzz target draws arguments of every kind (NaN and infinite numbers, huge integers,
booleans, strings, complex numbers, NumPy scalars and arrays, tensors of every shape
and dtype, sequences, dicts, schedules that return any of these or raise) and checks that

- a refusal is a ``TypeError`` or a ``ValueError`` (an ``IndexError`` for a per-step
  sequence that runs out, a ``KeyError`` where a scheduler resumes without
  ``initial_lr``, as documented) whose message names the argument at fault;
- a refusal changes nothing: parameters, ``state_dict()`` and parameter groups are as
  they were;
- whatever is accepted can be used: the next steps work, or refuse in the same way;
- an exception raised by the user's own schedule comes out as it was.

The default suite runs a few dozen examples per target (derandomized, so it is
reproducible); ``make test-slow`` runs each target with 1,000 examples or more.
"""

from __future__ import annotations

import copy
import inspect
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import descend
from descend import lr_scheduler, schedules
from tests.table import BY_NAME, RECORDS, Record
from tests.test_nonfinite import COMPAT, _compat_make

pytestmark = [
    pytest.mark.usefixtures("float64_default"),
    # hostile values overflow NumPy's arithmetic in schedules, and make torch cast complex
    # state to real: warnings, expected here
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

FAST = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
SLOW = settings(FAST, max_examples=1500, derandomize=False)
"""The slow tests draw the optimizer (or schedule, or scheduler) in each example: 1,500
examples per fuzz target."""


class UserError(Exception):
    """Raised by a drawn schedule: must come out of descend unchanged."""


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------

_ODD = [
    np.float32(np.nan),
    np.float64(0.5),
    np.float16(6e4),
    np.int64(3),
    np.int8(-1),
    np.bool_(True),
    np.array(0.25),
    np.array([0.1, 0.2]),
    np.array([[0.1]]),
    np.array([], dtype=np.float64),
    np.array(["a"]),
    Fraction(1, 3),
    Decimal("0.1"),
    Decimal("nan"),
    complex(math.nan, 1.0),
    b"0.1",
    object(),
    Ellipsis,
    float,
    range(3),
    {1, 2},
]


def _huge(bits: int, negative: bool) -> int:
    """An integer past int64 (and, from 1024 bits, past float64)."""
    return -(2**bits) if negative else 2**bits


def _numbers() -> st.SearchStrategy:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=0, max_value=1),
        st.integers(min_value=-3, max_value=5),
        st.builds(_huge, st.integers(min_value=60, max_value=1100), st.booleans()),
        st.booleans(),
    )


def _scalars() -> st.SearchStrategy:
    return st.one_of(
        _numbers(),
        st.none(),
        st.text(max_size=4),
        st.complex_numbers(max_magnitude=4),
        st.sampled_from(_ODD),
    )


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer past float's range
        return math.inf if value > 0 else -math.inf


_DTYPES = [torch.float64, torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64]


@st.composite
def _tensors(draw) -> torch.Tensor:
    shape = draw(st.sampled_from([(), (1,), (0,), (2,), (3,), (1, 1), (2, 2)]))
    dtype = draw(st.sampled_from(_DTYPES))
    numel = math.prod(shape)
    values = draw(st.lists(_numbers(), min_size=numel, max_size=numel))
    real = torch.tensor([_as_float(v) for v in values], dtype=torch.float64)
    if dtype == torch.bool:
        tensor = real != 0
    elif dtype.is_floating_point or dtype.is_complex:
        tensor = real.to(dtype)
    else:
        tensor = torch.nan_to_num(real).clamp(-(2**62), 2**62).to(dtype)
    tensor = tensor.reshape(shape)
    if draw(st.booleans()) and tensor.is_floating_point():
        tensor.requires_grad_()
    return tensor


def _returning(value: Any):
    def schedule(step):
        return value

    return schedule


def _raising(step):
    raise UserError(f"no value at step {step}")


def _callables(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.builds(_returning, inner),
        st.just(_raising),
        st.just(lambda: 0.1),  # takes no step
        st.just(lambda step: 0.1 if step < 1 else float("nan")),
        st.just(schedules.Cosine(0.1, 3)),
        st.just(schedules.Linear(0.5, -0.5, 2)),
    )


def hostile() -> st.SearchStrategy:
    """Any value: numbers, odd objects, tensors, containers of them, schedules."""
    simple = st.one_of(_scalars(), _tensors())
    containers = st.one_of(
        st.lists(simple, max_size=4),
        st.tuples(simple),
        st.tuples(simple, simple),
        st.tuples(simple, simple, simple),
        st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=4),
        st.dictionaries(st.text(max_size=3), simple, max_size=2),
    )
    return st.one_of(simple, containers, _callables(simple))


# --------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------


# Compat classes translate their arguments to descend's options, whose errors may use the
# option's name: MindSpore's ``learning_rate`` is each group's ``lr``, Lua torch's
# ``epsilon`` the ``eps`` of the descend class it builds on.
ALIASES = {
    "learning_rate": ("lr", "learning rate"),
    "epsilon": ("eps",),
    "learningRate": ("lr",),
    "weightDecay": ("weight_decay",),
    "learningRateDecay": ("lr_decay",),
}


def _mentions(error: BaseException, names) -> bool:
    text = str(error)
    return any(
        alias in text for name in names for alias in (str(name), *ALIASES.get(str(name), ()))
    )


def _assert_refusal(error: BaseException, names, allowed=(TypeError, ValueError)) -> None:
    """A documented exception naming one of ``names``; a user's own error passes."""
    if isinstance(error, UserError):
        return
    assert isinstance(error, allowed), f"{type(error).__name__}: {error}"
    assert _mentions(error, names), f"{type(error).__name__} names none of {names}: {error}"


def _assert_identical(actual: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), where
        torch.testing.assert_close(
            actual, expected, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{where}: {m}"
        )
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), where
        for key in expected:
            _assert_identical(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected) and len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected)):
            _assert_identical(a, e, f"{where}[{index}]")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), where
        assert np.array_equal(actual, expected, equal_nan=expected.dtype.kind in "fc"), where
    elif isinstance(expected, float) and math.isnan(expected):
        assert isinstance(actual, float) and math.isnan(actual), where
    else:
        assert actual is expected or actual == expected, f"{where}: {actual!r} != {expected!r}"


def _picture(optimizer, params) -> tuple:
    """Everything a refusal must leave as it was."""
    groups = [
        {k: (v if k == "params" else copy.copy(v)) for k, v in g.items()}
        for g in optimizer.param_groups
    ]
    return (
        [p.detach().clone() for p in params],
        [None if p.grad is None else p.grad.to_dense().clone() for p in params],
        copy.deepcopy(optimizer.state_dict()),
        [[id(p) for p in g["params"]] for g in groups],
        [sorted(k for k in g if k != "params") for g in groups],
    )


def _params(record: Record | None = None) -> list[torch.Tensor]:
    if record is not None:
        return record.make_params()
    generator = torch.Generator().manual_seed(3)
    return [
        torch.randn(s, generator=generator, dtype=torch.float64).requires_grad_()
        for s in [(4, 3), (3,)]
    ]


def _loss(record: Record | None, params, step: int) -> torch.Tensor:
    if record is not None:
        return record.loss(params, step)
    weight, bias = params[:2]
    x = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 4)
    return (torch.tanh(x @ weight + bias) - 0.3).pow(2).sum()


def _try_steps(optimizer, params, record: Record | None, names, steps: int = 2) -> None:
    """Take ``steps`` steps; a step may refuse (naming one of ``names``) and then must
    leave everything as it was."""
    closure_style = record is not None and record.closure
    for step in range(steps):

        def closure(step=step):
            optimizer.zero_grad()
            loss = _loss(record, params, step)
            loss.backward()
            return loss

        if not closure_style:
            closure()
        before = _picture(optimizer, params)
        try:
            optimizer.step(closure) if closure_style else optimizer.step()
        except Exception as error:
            _assert_refusal(error, names, (TypeError, ValueError, IndexError))
            if not isinstance(error, UserError):
                _assert_identical(_picture(optimizer, params), before, "after a refused step")
            return


# --------------------------------------------------------------------------------------
# Optimizer constructors
# --------------------------------------------------------------------------------------

_TYPOS = ["lrr", "momentun", "betas2", "weight_decays", "foo"]


def _option_names(cls) -> list[str]:
    return [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if name not in ("params", "parameters", "optimizer", "lars_filter")  # user code
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _fuzz_constructor(data, cls, make, record: Record | None) -> None:
    names = _option_names(cls)
    chosen = data.draw(
        st.lists(st.sampled_from(names + _TYPOS), min_size=1, max_size=3, unique=True),
        label="options",
    )
    kwargs = {name: data.draw(hostile(), label=name) for name in chosen}
    params = _params(record)
    before = [p.detach().clone() for p in params]
    try:
        optimizer = make(params, kwargs)
    except Exception as error:
        _assert_refusal(error, chosen)
        _assert_identical([p.detach() for p in params], before, "parameters")
        return
    _try_steps(optimizer, params, record, chosen)


def _make_record(record: Record):
    def make(params, kwargs):
        return record.cls(params, **kwargs)

    return make


def _make_compat(cls):
    def make(params, kwargs):
        if cls.__name__ == "LARS":
            return _compat_make(cls, params, **kwargs)
        names = _option_names(cls)
        first = next(iter(inspect.signature(cls).parameters))
        required = {  # what the class needs, where the draw left it out
            name: 0.01
            for name, p in inspect.signature(cls).parameters.items()
            if name != first
            and name not in kwargs
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and (
                p.default is inspect.Parameter.empty
                or (name == "lr" and not isinstance(p.default, (int, float, type(None))))
            )
        }
        del names
        return cls(params, **required, **kwargs)

    return make


# parametrized by name, so that a failing example prints short
NAMES = [r.name for r in RECORDS]
COMPAT_BY_NAME = {
    ".".join([p for p in c.__module__.split(".")[2:] if not p.startswith("_")] + [c.__name__]): c
    for c in COMPAT
}


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_constructor(name, data):
    record = BY_NAME[name]
    _fuzz_constructor(data, record.cls, _make_record(record), record)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_constructor_long(data):
    record = BY_NAME[data.draw(st.sampled_from(NAMES), label="optimizer")]
    _fuzz_constructor(data, record.cls, _make_record(record), record)


@pytest.mark.parametrize("name", COMPAT_BY_NAME)
@settings(FAST, max_examples=6)
@given(data=st.data())
def test_compat_constructor(name, data):
    cls = COMPAT_BY_NAME[name]
    _fuzz_constructor(data, cls, _make_compat(cls), None)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_compat_constructor_long(data):
    cls = COMPAT_BY_NAME[data.draw(st.sampled_from(sorted(COMPAT_BY_NAME)), label="optimizer")]
    _fuzz_constructor(data, cls, _make_compat(cls), None)


# --------------------------------------------------------------------------------------
# add_param_group
# --------------------------------------------------------------------------------------

_GROUP_WORDS = ("params", "param_group", "parameter", "param group", "group")


def _fuzz_add_param_group(data, record: Record) -> None:
    params = record.make_params()
    config = record.configs[0]
    optimizer = record.cls(params[:1], **config.kwargs)
    _try_steps(optimizer, params, record, (), steps=1)
    rest = params[1:]
    other = torch.zeros(2, requires_grad=True) * 2  # not a leaf
    choices = {
        "the rest": rest,
        "one tensor": rest[0],
        "a set": set(rest),
        "a tuple": tuple(rest),
        "named": [(f"w{i}", p) for i, p in enumerate(rest)],
        "a duplicate": [params[0]],
        "twice": [rest[0], rest[0]],
        "not a leaf": [other],
        "empty": [],
        "numbers": [1, 2],
        "hostile": None,
    }
    kind = data.draw(st.sampled_from(sorted(choices)), label="params kind")
    group_params = data.draw(hostile(), label="params") if kind == "hostile" else choices[kind]
    options = [n for n in _option_names(record.cls) if n != "impl"]
    chosen = data.draw(
        st.lists(
            st.sampled_from(options + ["impl", "step", "initial_lr", "name", *_TYPOS]),
            max_size=3,
            unique=True,
        ),
        label="options",
    )
    group: Any = {"params": group_params}
    group.update({name: data.draw(hostile(), label=name) for name in chosen})
    if data.draw(st.booleans(), label="not a dict"):
        group = data.draw(hostile(), label="param_group")
    before = _picture(optimizer, params)
    count = len(optimizer.param_groups)
    try:
        optimizer.add_param_group(group)
    except Exception as error:  # IndexError: a per-step sequence ends before "step"
        _assert_refusal(error, [*chosen, *_GROUP_WORDS], (TypeError, ValueError, IndexError))
        assert len(optimizer.param_groups) == count
        _assert_identical(_picture(optimizer, params), before, "after a refused group")
        return
    _try_steps(optimizer, params, record, [*chosen, *_GROUP_WORDS])


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_add_param_group(name, data):
    _fuzz_add_param_group(data, BY_NAME[name])


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_add_param_group_long(data):
    _fuzz_add_param_group(data, BY_NAME[data.draw(st.sampled_from(NAMES), label="optimizer")])


# --------------------------------------------------------------------------------------
# load_state_dict
# --------------------------------------------------------------------------------------

_STATE_WORDS = ("state_dict", "state", "param group", "parameter", "group")
_MUTATIONS = (
    "replace the whole",
    "drop a top-level key",
    "set a group option",
    "drop a group option",
    "set a group's params",
    "set a state entry",
    "drop a state entry",
    "set a parameter's state",
    "add state for an unknown id",
    "add a group",
    "drop a group",
)


def _mutate(data, packed: dict, per_element: tuple[str, ...]) -> tuple[Any, list[str]]:
    """``packed`` (a deep copy) changed in one way; the names a refusal may give."""
    mutation = data.draw(st.sampled_from(_MUTATIONS), label="mutation")
    groups, state = packed["param_groups"], packed["state"]
    index = data.draw(st.integers(0, len(groups) - 1), label="group")
    group = groups[index]
    if mutation == "replace the whole":
        return data.draw(hostile(), label="state_dict"), []
    if mutation == "drop a top-level key":
        key = data.draw(st.sampled_from(sorted(packed)), label="key")
        del packed[key]
        return packed, [key]
    if mutation == "set a group option":
        keys = sorted(k for k in group if k != "params") + ["extra", *_TYPOS]
        key = data.draw(st.sampled_from(keys), label="option")
        group[key] = data.draw(hostile(), label="value")
        return packed, [key]
    if mutation == "drop a group option":
        keys = sorted(k for k in group if k != "params")
        key = data.draw(st.sampled_from(keys), label="option")
        del group[key]
        return packed, [key]
    if mutation == "set a group's params":
        ids = list(group["params"])
        group["params"] = data.draw(
            st.one_of(
                hostile(),
                st.just(ids[:-1]),
                st.just(ids + [max(ids, default=0) + 100]),
                st.just(ids[:1] * len(ids)),
                st.just(list(reversed(ids))),
            ),
            label="params",
        )
        return packed, ["params"]
    if not state:
        return packed, []
    key = data.draw(st.sampled_from(sorted(state)), label="parameter")
    entry = state[key]
    if mutation == "set a state entry":
        # the entries load_state_dict checks: the step count and the per-element state
        # (other entries, such as LBFGS's history, are the algorithm's own business)
        names = [n for n in sorted(entry) if n == "step" or n in per_element] + ["extra"]
        name = data.draw(st.sampled_from(names), label="entry")
        entry[name] = data.draw(
            st.one_of(
                _scalars(),
                _tensors().map(torch.Tensor.detach),
                st.just(torch.zeros(7)),
                st.just(torch.zeros(3, 3, dtype=torch.int64)),
                st.just(torch.zeros((), dtype=torch.complex128)),
            ),
            label="value",
        )
        return packed, [name]
    if mutation == "drop a state entry":
        if entry:
            del entry[data.draw(st.sampled_from(sorted(entry)), label="entry")]
        return packed, list(entry)
    if mutation == "set a parameter's state":
        state[key] = data.draw(hostile(), label="value")
        return packed, [str(key)]
    if mutation == "add state for an unknown id":
        state[data.draw(st.sampled_from([99, -1, "w", None]), label="id")] = dict(entry)
        return packed, []
    if mutation == "add a group":
        groups.append(copy.deepcopy(group))
        return packed, []
    del groups[index]
    return packed, []


def _fuzz_load_state_dict(data, record: Record) -> None:
    config = record.configs[0]
    source_params = record.make_params()
    source = record.cls(record.param_groups(source_params, config), **config.kwargs)
    _try_steps(source, source_params, record, (), steps=2)
    packed, names = _mutate(data, copy.deepcopy(source.state_dict()), record.cls.per_element_state)

    params = record.make_params()
    target = record.cls(record.param_groups(params, config), **config.kwargs)
    _try_steps(target, params, record, (), steps=1)
    before = _picture(target, params)
    try:
        target.load_state_dict(packed)
    except Exception as error:
        _assert_refusal(error, [*names, *_STATE_WORDS], (TypeError, ValueError, KeyError))
        _assert_identical(_picture(target, params), before, "after a refused state_dict")
        return
    _try_steps(target, params, record, [*names, *_STATE_WORDS])


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_load_state_dict(name, data):
    _fuzz_load_state_dict(data, BY_NAME[name])


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_load_state_dict_long(data):
    _fuzz_load_state_dict(data, BY_NAME[data.draw(st.sampled_from(NAMES), label="optimizer")])


# --------------------------------------------------------------------------------------
# Schedules: descend.schedules and MindSpore's schedule classes and dynamic lr functions
# --------------------------------------------------------------------------------------


def _schedule_targets() -> dict[str, Any]:
    from descend.compat import mindspore

    targets = {
        name: getattr(schedules, name)
        for name in schedules.__all__
        if isinstance(getattr(schedules, name), type) and name != "Schedule"
    }
    for name in (
        "ExponentialDecayLR",
        "NaturalExpDecayLR",
        "InverseDecayLR",
        "CosineDecayLR",
        "PolynomialDecayLR",
        "WarmUpLR",
        "piecewise_constant_lr",
        "exponential_decay_lr",
        "natural_exp_decay_lr",
        "inverse_decay_lr",
        "cosine_decay_lr",
        "polynomial_decay_lr",
        "warmup_lr",
    ):
        targets[f"mindspore.{name}"] = getattr(mindspore, name)
    return targets


SCHEDULE_TARGETS = _schedule_targets()


def _plausible(annotation: str) -> st.SearchStrategy:
    """Values a schedule's argument of this annotation usually takes."""
    if "Schedule" in annotation and "Sequence" in annotation:
        return st.lists(
            st.sampled_from([schedules.Constant(0.5), schedules.Cosine(0.1, 10), 0.2]),
            min_size=1,
            max_size=3,
        )
    if "Schedule" in annotation:
        return st.sampled_from([schedules.Constant(0.5), schedules.Linear(1.0, 0.0, 10), 0.3])
    if "Sequence" in annotation:
        return st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True).map(sorted)
    if "bool" in annotation:
        return st.booleans()
    if "str" in annotation:
        return st.sampled_from(["linear", "cos", "triangular", "exp_range", "cycle", "x"])
    if "Callable" in annotation:
        return st.sampled_from([None, _returning(0.5), abs])
    return st.one_of(st.integers(1, 20), st.floats(0, 10), st.floats(0.01, 1))


def _fuzz_schedule(data, name: str) -> None:
    target = SCHEDULE_TARGETS[name]
    signature = inspect.signature(target)
    kwargs, given = {}, []
    for arg, parameter in signature.parameters.items():
        optional = parameter.default is not inspect.Parameter.empty
        how = data.draw(
            st.sampled_from(
                ["plausible", "hostile", "default"] if optional else ["plausible", "hostile"]
            ),
            label=f"{arg} kind",
        )
        if how == "default":
            continue
        strategy = hostile() if how == "hostile" else _plausible(str(parameter.annotation))
        kwargs[arg] = data.draw(strategy, label=arg)
        given.append(arg)
    try:
        made = target(**kwargs)
    except Exception as error:
        _assert_refusal(error, given)
        return
    if isinstance(made, list):  # MindSpore's dynamic lr functions: the values themselves
        assert all(isinstance(v, float) for v in made), made
        return
    steps = [0, 1, 2.5, 7, 100, 1e6]
    values = [made(step) for step in steps]
    assert all(isinstance(v, float) for v in values), values
    np.testing.assert_array_equal(made.values(steps), np.asarray(values))
    assert copy.deepcopy(made) == made


SCHEDULE_NAMES = sorted(SCHEDULE_TARGETS)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@settings(FAST, max_examples=10)
@given(data=st.data())
def test_schedule(name, data):
    _fuzz_schedule(data, name)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_schedule_long(data):
    _fuzz_schedule(data, data.draw(st.sampled_from(SCHEDULE_NAMES), label="schedule"))


# --------------------------------------------------------------------------------------
# descend.lr_scheduler
# --------------------------------------------------------------------------------------

SCHEDULER_TARGETS = {
    name: getattr(lr_scheduler, name)
    for name in lr_scheduler.__all__
    if isinstance(getattr(lr_scheduler, name), type) and name != "LRScheduler"
}
SCHEDULER_NAMES = sorted(SCHEDULER_TARGETS)

_INTS = (
    "step_size",
    "T_max",
    "T_0",
    "T_mult",
    "total_iters",
    "total_steps",
    "epochs",
    "steps_per_epoch",
    "patience",
    "cooldown",
    "step_size_up",
    "step_size_down",
)
_WORDS = {
    "mode": ["min", "max", "triangular", "triangular2", "exp_range", "x"],
    "anneal_strategy": ["cos", "linear", "x"],
    "threshold_mode": ["rel", "abs", "x"],
    "scale_mode": ["cycle", "iterations", "x"],
}


def _plausible_argument(name: str, optimizer, data) -> Any:
    if name in _INTS:
        return data.draw(st.integers(0, 12), label=name)
    if name in _WORDS:
        return data.draw(st.sampled_from(_WORDS[name]), label=name)
    if name == "milestones":
        return data.draw(
            st.lists(st.integers(0, 12), max_size=3, unique=True).map(sorted), label=name
        )
    if name == "last_epoch":
        return data.draw(st.integers(-1, 3), label=name)
    if name in ("cycle_momentum", "three_phase"):
        return data.draw(st.booleans(), label=name)
    if name == "lr_lambda":
        return data.draw(
            st.sampled_from([schedules.Exponential(1.0, 1, 0.9), [abs, abs], lambda e: 0.5]),
            label=name,
        )
    if name == "scale_fn":
        return data.draw(st.sampled_from([None, _returning(0.5)]), label=name)
    if name == "schedulers":
        count = data.draw(st.integers(1, 2), label="schedulers")
        kinds = [lr_scheduler.ExponentialLR, lr_scheduler.ConstantLR, lr_scheduler.LinearLR]
        built = []
        for index in range(count):
            kind = data.draw(st.sampled_from(kinds), label=f"scheduler {index}")
            built.append(
                kind(optimizer, 0.9) if kind is lr_scheduler.ExponentialLR else kind(optimizer)
            )
        return built
    if name == "optimizer":
        return optimizer
    return data.draw(st.one_of(st.floats(0, 1), st.floats(0, 10), st.integers(0, 3)), label=name)


def _scheduler_picture(optimizer) -> list[dict]:
    return [
        {
            k: (v.clone() if isinstance(v, torch.Tensor) else v)
            for k, v in g.items()
            if k != "params"
        }
        for g in optimizer.param_groups
    ]


def _fuzz_scheduler(data, name: str) -> None:
    cls = SCHEDULER_TARGETS[name]
    params = _params()
    optimizer = descend.SGD(
        [{"params": params[:1]}, {"params": params[1:], "lr": 0.05}], lr=0.1, momentum=0.9
    )
    kwargs, given = {}, []
    for arg, parameter in inspect.signature(cls).parameters.items():
        optional = parameter.default is not inspect.Parameter.empty
        kinds = ["plausible", "hostile"] + (["default"] * 2 if optional else [])
        how = data.draw(st.sampled_from(kinds), label=f"{arg} kind")
        if how == "default":
            continue
        if how == "hostile":
            kwargs[arg] = data.draw(hostile(), label=arg)
        else:
            kwargs[arg] = _plausible_argument(arg, optimizer, data)
        given.append(arg)
    before = _scheduler_picture(optimizer)
    try:
        scheduler = cls(**kwargs)
    except Exception as error:
        # KeyError: last_epoch given without the groups' initial_lr, as documented; the
        # message may name any argument (one left at its default may be what is missing)
        names = [*inspect.signature(cls).parameters, "initial_lr"]
        _assert_refusal(error, names, (TypeError, ValueError, KeyError))
        _assert_identical(_scheduler_picture(optimizer), before, "after a refused scheduler")
        return
    for step in range(4):
        optimizer.zero_grad()
        _loss(None, params, step).backward()
        try:
            optimizer.step()
        except ValueError as error:  # a value the scheduler set (a negative lr, say)
            _assert_refusal(error, ["lr", "momentum"])
            return
        if name in ("ReduceLROnPlateau", "SequentialLR", "ChainedScheduler"):
            arguments = [data.draw(st.one_of(st.floats(0, 10), hostile()), label="metrics")]
        else:
            arguments = []
        before = _scheduler_picture(optimizer)
        try:
            scheduler.step(*arguments)
        except Exception as error:  # a bad metric, or what a drawn lr_lambda returned
            _assert_refusal(error, ["metrics", "lr_lambda", "total_steps"])
            _assert_identical(_scheduler_picture(optimizer), before, "after a refused step")
            return
        lrs = scheduler.get_last_lr()
        assert len(lrs) == len(optimizer.param_groups)
        assert all(isinstance(lr, (float, int, torch.Tensor)) for lr in lrs), lrs
    packed = scheduler.state_dict()
    copy.deepcopy(packed)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@FAST
@given(data=st.data())
def test_lr_scheduler(name, data):
    _fuzz_scheduler(data, name)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_lr_scheduler_long(data):
    _fuzz_scheduler(data, data.draw(st.sampled_from(SCHEDULER_NAMES), label="scheduler"))


# --------------------------------------------------------------------------------------
# Regressions: each input below was found by the fuzzing above, and crashed (or was taken
# and broke a later step) before it was refused as here
# --------------------------------------------------------------------------------------


def _two() -> list[torch.Tensor]:
    return [torch.ones(2, 2, requires_grad=True), torch.ones(3, requires_grad=True)]


def _sgd():
    return descend.SGD(_two(), lr=0.1, momentum=0.9)


def _no_arguments():
    return 0.1


REFUSED = [
    # optimizer options
    (
        "huge int lr",
        lambda: descend.SGD(_two(), lr=2**1100),
        ValueError,
        r"lr is out of the range of a float, got int 332 digits",
    ),
    (
        "huge int in per-step lr",
        lambda: descend.SGD(_two(), lr=[0.1, -(2**1100)]),
        ValueError,
        r"lr\[1\] is out of the range of a float",
    ),
    (
        "schedule without the step",
        lambda: descend.SGD(_two(), lr=_no_arguments),
        TypeError,
        r"lr is a callable, .*_no_arguments.*, that cannot be called with the step",
    ),
    (
        "tensor foreach",
        lambda: descend.Adam(_two(), foreach=torch.ones(2)),
        TypeError,
        r"foreach must be True, False or None, got tensor",
    ),
    (
        "array impl",
        lambda: descend.Adam(_two(), impl=np.array([0.1, 0.2])),
        TypeError,
        r"impl must be one of 'loop', 'foreach', 'compiled' or None, got ndarray",
    ),
    (
        "0-d tensor betas",
        lambda: descend.Adam(_two(), betas=torch.tensor(0.9)),
        TypeError,
        r"betas must be a tuple of 2 values, got tensor\(0.9000\)",
    ),
    (
        "None in betas",
        lambda: descend.NAdam(_two(), betas=(None, 0.9)),
        TypeError,
        r"betas\[0\] must be a number, got None in \(None, 0.9\)",
    ),
    (
        "tensor entry of a per-step sequence",
        lambda: descend.SGD(_two(), lr=(0.1, torch.ones(0))),
        TypeError,
        r"lr\[1\] must be a number, got a tensor of shape \(0,\)",
    ),
    (
        "complex per-step tensor",
        lambda: descend.SGD(_two(), lr=torch.ones(3, dtype=torch.cfloat)),
        TypeError,
        r"lr must hold real numbers, got a tensor of torch.complex64",
    ),
    (
        "LBFGS history too long",
        lambda: descend.LBFGS(_two(), history_size=2**60),
        ValueError,
        r"history_size must be at most 16777216, got 1152921504606846976",
    ),
    (
        "Muon eps past bfloat16",
        lambda: descend.Muon([torch.ones(2, 2, requires_grad=True)], eps=-1e39),
        ValueError,
        r"eps must be within bfloat16's range .* got -1e\+39",
    ),
    # descend.compat
    (
        "MindSpore complex lr",
        lambda: _ms_experimental().SGD(_two(), lr=torch.tensor([0j])),
        TypeError,
        r"For 'SGD', the argument 'lr' must hold a real number",
    ),
    (
        "MindSpore None in a dynamic lr",
        lambda: _ms().ProximalAdagrad(_two(), learning_rate=(None,)),
        TypeError,
        r"learning_rate\[0\] must be a number, got NoneType None",
    ),
    (
        "MindSpore text in a dynamic lr",
        lambda: _ms().LazyAdam(_two(), learning_rate=("",)),
        TypeError,
        r"learning_rate\[0\] must be a number, got str ''",
    ),
    (
        "MindSpore huge int in a dynamic lr",
        lambda: _ms().SGD(_two(), learning_rate=[0.1, 2**1100]),
        ValueError,
        r"learning_rate\[1\] is out of the range of a float",
    ),
    (
        "MindSpore AdaFactor tensor flag",
        lambda: _ms().AdaFactor(_two(), relative_step=torch.ones(0)),
        TypeError,
        r"For 'AdaFactor', the argument 'relative_step' must be True or False",
    ),
    (
        "MXNet ADAM beta2 = 1",
        lambda: _mx().ADAM(_two(), beta2=1.0),
        ValueError,
        r"beta2 must be in \(0, 1\), got 1.0",
    ),
    (
        "MXNet ADAM beta1 > 1",
        lambda: _mx().ADAM(_two(), beta1=2.0),
        ValueError,
        r"beta1 must be in \(0, 1\), got 2.0",
    ),
    # schedules
    (
        "0-d array of boundaries",
        lambda: schedules.PiecewiseInterpolated(np.array(0.25), [1.0]),
        TypeError,
        r"PiecewiseInterpolated: boundaries must be a 1-D sequence of steps",
    ),
    (
        "NaN factor",
        lambda: schedules.Product([float("nan"), 1.0]),
        ValueError,
        r"Product: factors\[0\] must be finite, got nan",
    ),
    (
        "infinite denominator",
        lambda: schedules.Quotient(0.3, math.inf),
        ValueError,
        r"denominator must be finite, got inf",
    ),
    (
        "huge int period",
        lambda: schedules.Repeat(schedules.Constant(0.5), 2**1036),
        ValueError,
        r"Repeat: period must be finite",
    ),
    # LR schedulers
    (
        "ChainedScheduler of numbers",
        lambda: lr_scheduler.ChainedScheduler([0.8, 0.1]),
        TypeError,
        r"ChainedScheduler: schedulers\[0\] must be a descend.lr_scheduler scheduler, got float",
    ),
    (
        "CosineAnnealingLR dict eta_min",
        lambda: lr_scheduler.CosineAnnealingLR(_sgd(), 10, eta_min={}),
        TypeError,
        r"eta_min must be a number, got dict \{\}",
    ),
    (
        "ExponentialLR gamma 0",
        lambda: lr_scheduler.ExponentialLR(_sgd(), 0.0),
        ValueError,
        r"gamma must be > 0, got 0.0",
    ),
    (
        "ExponentialLR gamma None",
        lambda: lr_scheduler.ExponentialLR(_sgd(), None),
        TypeError,
        r"gamma must be a number, got NoneType None",
    ),
    (
        "CyclicLR dict base_lr",
        lambda: lr_scheduler.CyclicLR(_sgd(), {}, 0.5),
        TypeError,
        r"base_lr must be a number, got dict",
    ),
    (
        "ConstantLR bool factor",
        lambda: lr_scheduler.ConstantLR(_sgd(), factor=True),
        ValueError,
        r"factor must be in \[0, 1\], got True",
    ),
    (
        "tensor last_epoch",
        lambda: lr_scheduler.ConstantLR(_sgd(), last_epoch=torch.ones(0)),
        ValueError,
        r"last_epoch must be an integer >= -1, got tensor",
    ),
    (
        "0-d tensor milestones",
        lambda: lr_scheduler.MultiStepLR(_sgd(), torch.tensor(1.0)),
        TypeError,
        r"milestones must be a list of steps, got tensor\(1.\)",
    ),
    (
        "LambdaLR without the step",
        lambda: lr_scheduler.LambdaLR(_sgd(), _no_arguments),
        TypeError,
        r"lr_lambda is a callable, .* that cannot be called with the step",
    ),
    (
        "SequentialLR number milestones",
        lambda: (lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.ConstantLR(o)], 0.0))(_sgd()),
        TypeError,
        r"milestones must be a list of steps, got 0.0",
    ),
    (
        "ReduceLROnPlateau function cooldown",
        lambda: lr_scheduler.ReduceLROnPlateau(_sgd(), cooldown=_no_arguments),
        ValueError,
        r"cooldown must be an integer >= 0",
    ),
]


def _ms():
    from descend.compat import mindspore

    return mindspore


def _ms_experimental():
    from descend.compat.mindspore.experimental import optim

    return optim


def _mx():
    from descend.compat.mxnet import optim

    return optim


@pytest.mark.parametrize(
    ("make", "error", "match"), [pytest.param(*r[1:], id=r[0]) for r in REFUSED]
)
def test_found_by_fuzzing_and_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_found_by_fuzzing_complex_per_step_lr_is_refused_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warned that it dropped the imaginary parts
        with pytest.raises(TypeError, match="lr must hold real numbers"):
            descend.SGD(_two(), lr=torch.ones(3, dtype=torch.cfloat))


GROUPS_REFUSED = [
    ({"params": 0.5}, TypeError, r"params must be a tensor or an iterable of tensors, got float"),
    ({"params": "rest", "step": None}, ValueError, r"step must be an integer >= 0, got None"),
    ({"params": "rest", "step": 1.5}, ValueError, r"step must be an integer >= 0, got 1.5"),
    (
        {"params": "twice"},
        ValueError,
        r"parameter 1 \(shape \(3,\)\) is already in a parameter group",
    ),
]


@pytest.mark.parametrize(("group", "error", "match"), GROUPS_REFUSED)
def test_found_by_fuzzing_add_param_group_refuses(group, error, match):
    first, rest = _two()
    optimizer = descend.Adam([first], lr=0.1)
    first.grad = torch.ones_like(first)
    optimizer.step()
    before = copy.deepcopy(optimizer.state_dict())
    group = dict(group)
    group["params"] = {"rest": [rest], "twice": [rest, rest]}.get(group["params"], group["params"])
    with pytest.raises(error, match="param group 1: " + match):
        optimizer.add_param_group(group)
    _assert_identical(optimizer.state_dict(), before)


def test_found_by_fuzzing_a_parameter_twice_in_one_group_is_refused():
    weight = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"parameter 1 \(shape \(2,\)\) is already in a param"):
        descend.SGD([weight, weight], lr=0.1)


def _adam_after_a_step():
    params = _two()
    optimizer = descend.Adam(params, lr=0.1)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return optimizer, params


def _broken(change):
    optimizer, _ = _adam_after_a_step()
    packed = copy.deepcopy(optimizer.state_dict())
    change(packed)
    return packed


LOADS_REFUSED = [
    ("not a dict", lambda: 0.5, TypeError, r"state_dict must be a dict, got float"),
    (
        "a number for a parameter's state",
        lambda: _broken(lambda d: d["state"].update({0: 0.5})),
        TypeError,
        r"state_dict state for parameter 0 must be a dict, got float",
    ),
    (
        "None for exp_avg",
        lambda: _broken(lambda d: d["state"][0].update(exp_avg=None)),
        TypeError,
        r"state_dict state for parameter 0: exp_avg must be a tensor, a number, a list"
        r"|state_dict state for parameter 0: exp_avg must be a tensor, got NoneType",
    ),
    (
        "None for step",
        lambda: _broken(lambda d: d["state"][1].update(step=None)),
        TypeError,
        r"state_dict state for parameter 1: step must be a number >= 0",
    ),
    (
        "text for a group's step",
        lambda: _broken(lambda d: d["param_groups"][0].update(step="x")),
        ValueError,
        r"param group 0 of the state_dict: step must be an integer >= 0, got 'x'",
    ),
    (
        "arrays for params",
        lambda: _broken(lambda d: d["param_groups"][0].update(params=[np.zeros(1)])),
        TypeError,
        r"param group 0 of the state_dict: params must be a list of parameter keys",
    ),
    (
        "a range for an entry",
        lambda: _broken(lambda d: d["state"][0].update(extra=range(3))),
        TypeError,
        r"state_dict state for parameter 0: extra must be a tensor, a number, a list or "
        r"None, got range",
    ),
    (
        "complex exp_avg for a real parameter",
        lambda: _broken(
            lambda d: d["state"][1].update(exp_avg=torch.zeros(3, dtype=torch.complex128))
        ),
        ValueError,
        r"state_dict state for parameter 1: exp_avg is torch.complex128, the parameter "
        r"torch.float64",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "match"), [pytest.param(*r[1:], id=r[0]) for r in LOADS_REFUSED]
)
def test_found_by_fuzzing_load_state_dict_refuses(make, error, match):
    optimizer, params = _adam_after_a_step()
    before = (copy.deepcopy(optimizer.state_dict()), [p.detach().clone() for p in params])
    with pytest.raises(error, match=match):
        optimizer.load_state_dict(make())
    _assert_identical((optimizer.state_dict(), [p.detach() for p in params]), before)


def _lbfgs_run(steps: int, **kwargs) -> tuple[list[torch.Tensor], descend.LBFGS]:
    record = BY_NAME["LBFGS"]
    params = record.make_params()
    optimizer = descend.LBFGS(params, line_search_fn="strong_wolfe", history_size=3, **kwargs)
    _try_steps(optimizer, params, record, (), steps=steps)
    return params, optimizer


def test_found_by_fuzzing_lbfgs_takes_fractions_and_huge_ints_as_floats():
    for lr, same in ((Fraction(1, 3), 1 / 3), (10**30, 1e30)):
        ours, _ = _lbfgs_run(2, lr=lr)
        theirs, _ = _lbfgs_run(2, lr=same)
        _assert_identical([p.detach() for p in ours], [p.detach() for p in theirs])


def test_found_by_fuzzing_lbfgs_with_lr_0_stops_instead_of_dividing_by_zero():
    record = BY_NAME["LBFGS"]
    params, optimizer = _lbfgs_run(2)
    optimizer.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in params]
    _try_steps(optimizer, params, record, (), steps=1)  # torch: ZeroDivisionError
    _assert_identical([p.detach() for p in params], before)
    assert optimizer.steps_taken == 3


@pytest.mark.parametrize("history_size", [1, 8])
def test_found_by_fuzzing_lbfgs_resumes_with_another_history_size(history_size):
    record = BY_NAME["LBFGS"]
    _, source = _lbfgs_run(3)
    assert len(source.state[source.param_groups[0]["params"][0]]["old_dirs"]) == 3
    packed = source.state_dict()
    packed["param_groups"][0]["history_size"] = history_size
    params, optimizer = _lbfgs_run(0)
    optimizer.load_state_dict(packed)
    _try_steps(optimizer, params, record, (), steps=2)  # was an IndexError at 8
    state = optimizer.state[params[0]]
    assert len(state["old_dirs"]) <= history_size <= len(state["al"])


def test_found_by_fuzzing_lbfgs_refuses_an_incomplete_history():
    _, source = _lbfgs_run(2)
    packed = source.state_dict()
    del packed["state"][0]["d"]
    _, optimizer = _lbfgs_run(0)
    with pytest.raises(ValueError, match="the L-BFGS history is incomplete, it lacks d"):
        optimizer.load_state_dict(packed)


def test_found_by_fuzzing_betas_given_as_a_tensor_that_requires_grad_are_detached():
    optimizer = descend.Adam(_two(), betas=torch.tensor([0.9, 0.99], requires_grad=True))
    betas = optimizer.param_groups[0]["betas"]
    assert not any(b.requires_grad for b in betas)
    copied = copy.deepcopy(optimizer.state_dict())  # was: only leaves can be deep-copied
    assert [float(b) for b in copied["param_groups"][0]["betas"]] == pytest.approx([0.9, 0.99])


def test_found_by_fuzzing_mindspore_learning_rates_of_tensors_that_require_grad():
    values = torch.tensor([0.1, 0.05], requires_grad=True)  # was: numpy() on such a tensor
    params = _two()
    optimizer = _ms().SGD(params, learning_rate=values)
    expected = torch.tensor([0.1, 0.05], dtype=torch.float32)
    assert torch.equal(optimizer.param_groups[0]["lr"], expected)
    listed = _ms().SGD(_two(), learning_rate=[torch.tensor([0.1]), 0.05])  # one-element entries
    assert torch.equal(listed.param_groups[0]["lr"], expected)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SGD"])
def test_found_by_fuzzing_mindspore_experimental_refuses_a_list_lr(name):
    cls = getattr(_ms_experimental(), name)  # the Adam family took it, then float() failed
    with pytest.raises(TypeError, match=rf"For '{name}', the argument 'lr' must be an int, a"):
        cls(_two(), lr=[0.1, 0.05])


def test_found_by_fuzzing_a_scheduler_refused_leaves_the_groups_as_they_were():
    optimizer = _sgd()
    before = _scheduler_picture(optimizer)
    with pytest.raises(TypeError, match=r"lr_lambda is a schedule, .* returned str 'x'"):
        lr_scheduler.LambdaLR(optimizer, _returning("x"))  # was: initial_lr left behind
    with pytest.raises(TypeError, match=r"gamma must be a number, got Tensor"):
        lr_scheduler.CyclicLR(optimizer, 0.01, 0.1, gamma=torch.tensor([0.5]))  # was: momenta set
    _assert_identical(_scheduler_picture(optimizer), before)


def test_found_by_fuzzing_scheduler_steps_refuse_bad_values():
    optimizer = _sgd()
    plateau = lr_scheduler.ReduceLROnPlateau(optimizer)
    with pytest.raises(TypeError, match=r"metrics must be a number, got str '\)'"):
        plateau.step(")")
    values = iter([0.5, complex(0.5, 1.0)])
    multiplicative = lr_scheduler.MultiplicativeLR(optimizer, lambda step: next(values))
    optimizer.step()
    multiplicative.step()
    optimizer.step()
    before = _scheduler_picture(optimizer)
    with pytest.raises(TypeError, match=r"lr_lambda is a schedule, .* returned complex"):
        multiplicative.step()  # was: a complex lr in the groups
    _assert_identical(_scheduler_picture(optimizer), before)
