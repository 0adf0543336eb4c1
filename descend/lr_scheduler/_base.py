"""The scheduler base class: counting, skipped steps, groups added later, state."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim import lr_scheduler as _torch

EPOCH_DEPRECATION_WARNING = (
    "scheduler.step(epoch) is deprecated, as in torch: call scheduler.step() once per "
    "step or epoch. With an epoch, the scheduler jumps to it through its closed form."
)

STEP_ORDER_WARNING = (
    "lr_scheduler.step() was called before optimizer.step(): the first value of the "
    "schedule is skipped. Call optimizer.step() first, then lr_scheduler.step()."
)


# --------------------------------------------------------------------------------------
# Watching the optimizer's steps
# --------------------------------------------------------------------------------------


def _count_step_call(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
    """A step post-hook counting ``optimizer.step()`` calls (for torch optimizers)."""
    optimizer.__dict__["_descend_step_calls"] = optimizer.__dict__.get("_descend_step_calls", 0) + 1


def _watch(optimizer: Optimizer) -> None:
    if "steps_taken" in optimizer.__dict__ or optimizer.__dict__.get("_descend_watched"):
        return
    optimizer.register_step_post_hook(_count_step_call)
    optimizer.__dict__["_descend_watched"] = True


def _progress(optimizer: Optimizer) -> tuple[int, int]:
    """``(step() calls, steps that updated)`` so far. descend optimizers count skipped
    steps (GradScaler's inf/NaN check); for others every call counts as an update."""
    taken = getattr(optimizer, "steps_taken", None)
    if taken is not None:
        return taken + getattr(optimizer, "steps_skipped", 0), taken
    calls = optimizer.__dict__.get("_descend_step_calls", 0)
    return calls, calls


# --------------------------------------------------------------------------------------
# Group values
# --------------------------------------------------------------------------------------


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, Tensor) else value


def _set(group: dict[str, Any], key: str, value: float) -> None:
    """Set ``group[key]``, in place when it is a tensor (a compiled step keeps reading the
    same tensor, so a new value does not recompile it)."""
    if isinstance(group.get(key), Tensor):
        group[key].fill_(value)
    else:
        group[key] = value


def _check_real(
    name: str, value: Any, low: float | None = None, strict: bool = False, tensors: bool = False
) -> None:
    """``value`` must be a finite real number (where ``tensors``, a one-element tensor of
    one too), at least ``low`` (above it, when ``strict``)."""
    number = value
    if tensors and isinstance(value, Tensor) and value.numel() == 1:
        number = value.item()
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        finite = math.isfinite(number)
    except OverflowError:  # an integer past float's range
        finite = False
    if not finite:
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and not (number > low if strict else number >= low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low:g}, got {value!r}")


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list:
    for index, entry in enumerate(value if isinstance(value, (list, tuple)) else [value]):
        where = f"{name}[{index}]" if isinstance(value, (list, tuple)) else name
        _check_real(where, entry, tensors=True)
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} has {len(value)} values but the optimizer has "
                f"{len(optimizer.param_groups)} parameter groups: give one per group, or one "
                f"for all, got {value!r}"
            )
        return [_copy(v) for v in value]
    return [_copy(value)] * len(optimizer.param_groups)


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer (descend's optimizers are), got "
            f"{type(optimizer).__name__}"
        )
    for index, group in enumerate(optimizer.param_groups):
        _check_lr(index, group)


def _check_lr(index: int, group: dict[str, Any]) -> None:
    """A scheduler sets ``group["lr"]``: it must be a number or a one-element tensor."""
    lr = group.get("lr")
    is_number = isinstance(lr, (int, float)) and not isinstance(lr, bool)
    if not is_number and not (isinstance(lr, Tensor) and lr.numel() == 1):
        raise TypeError(
            f"param group {index}'s lr is {type(lr).__name__} {lr!r}; an LR scheduler needs a "
            "number or a one-element tensor there. A schedule or per-step sequence given as "
            "lr already schedules it: use that or the scheduler, not both"
        )


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_milestones(milestones: Any) -> list[int]:
    """``milestones`` as a list of steps (integers >= 0), or the error naming it."""
    if isinstance(milestones, (str, bytes, dict)) or not isinstance(milestones, Iterable):
        raise TypeError(f"milestones must be a list of steps, got {milestones!r}")
    try:
        steps = list(milestones)
    except TypeError:  # a 0-d tensor or array
        raise TypeError(f"milestones must be a list of steps, got {milestones!r}") from None
    for index, milestone in enumerate(steps):
        _check_int(f"milestones[{index}]", milestone, 0)
    return steps


def _check_factor(name: str, value: Any, low_open: bool = False) -> None:
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (0 < value <= 1 if low_open else 0 <= value <= 1)
    )
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


# --------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------


class LRScheduler(_torch.LRScheduler):
    """Base class: changes the optimizer's learning rates as the steps go by.

    Subclasses give the values at the current count through :meth:`get_lr` (torch's
    protocol, so torch-style subclasses work unchanged). The state is the count
    (``last_epoch``), ``base_lrs`` and the last values set; ``state_dict()`` holds these
    as plain data.
    """

    _not_state: tuple[str, ...] = ("optimizer", "_seen", "_is_initial")
    """Attributes that ``state_dict`` leaves out: the optimizer, and what is rebuilt from
    the constructor's arguments (schedules, callables)."""

    _is_initial = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        _check_int("last_epoch", last_epoch, -1)
        self.optimizer = optimizer
        added = []  # taken back if the first values cannot be computed
        if last_epoch == -1:
            for group in optimizer.param_groups:
                if "initial_lr" not in group:
                    group["initial_lr"] = _copy(group["lr"])
                    added.append(group)
        else:
            _check_int("last_epoch", last_epoch, -1)
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param_groups[{i}] has no 'initial_lr', which resuming with "
                        f"last_epoch={last_epoch} needs: load the optimizer's state_dict "
                        "first, or build the scheduler with last_epoch=-1 and load its "
                        "state_dict"
                    )
        self.base_lrs: list[float | Tensor] = [
            _copy(group["initial_lr"]) for group in optimizer.param_groups
        ]
        self.last_epoch = last_epoch
        try:
            self._initial_step()
        except Exception:
            for group in added:
                del group["initial_lr"]
            raise
        _watch(optimizer)

    # -- stepping --------------------------------------------------------------------

    def _initial_step(self) -> None:
        """Move to the first count (0, or ``last_epoch + 1`` when resuming) and set it."""
        self._step_count = 0
        self._seen = _progress(self.optimizer)
        self._is_initial = True
        try:
            self._update_lr()
        finally:
            self._is_initial = False
        self._step_count = 1

    def step(self, epoch: int | None = None) -> None:
        """Advance one step (or epoch) and set the learning rates for it.

        Call it after ``optimizer.step()``. If every ``optimizer.step()`` since the last
        call was skipped (inf/NaN gradients under ``torch.amp.GradScaler``; descend
        optimizers report skips), the schedule stays where it is.
        """
        if self._should_skip():
            return
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _should_skip(self) -> bool:
        """Whether the optimizer skipped every step since the last call; warns, as torch
        does, when the optimizer has not been stepped at all before the first call.

        Every ``step`` starts here, so groups added since the last step that cannot be
        scheduled are refused here too, before anything changes."""
        self._check_new_groups()
        calls, taken = _progress(self.optimizer)
        seen_calls, seen_taken = getattr(self, "_seen", (calls, taken))
        self._seen = (calls, taken)
        if self._step_count == 1 and calls == seen_calls:
            warnings.warn(STEP_ORDER_WARNING, UserWarning, stacklevel=3)
        return calls > seen_calls and taken == seen_taken

    def _update_lr(self, epoch: int | None = None) -> None:
        """Go to the next count (or to ``epoch``) and set the values there."""
        self._add_new_groups()
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed_form = getattr(self, "_get_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        self._write(values)

    def _write(self, values: Sequence[float]) -> None:
        for group, value in zip(self.optimizer.param_groups, values):
            _set(group, "lr", value)
        self._record_lrs()

    def _record_lrs(self) -> None:
        """Remember the groups' lrs as the values set last (copies: never aliases)."""
        self._last_lr = [_copy(group["lr"]) for group in self.optimizer.param_groups]

    def _attach(self, optimizer: Optimizer, last_epoch: int) -> None:
        """What :meth:`__init__` sets up, for schedulers that set their lrs themselves
        (ReduceLROnPlateau, the composites): the optimizer, the count, step watching."""
        self.optimizer = optimizer
        self.last_epoch = last_epoch
        _watch(optimizer)
        self._seen = _progress(optimizer)
        self._step_count = 1

    def _restart(self) -> None:
        """Start again from count 0, from the current lrs (SequentialLR, at a milestone)."""
        self.last_epoch = -1
        self._initial_step()

    def get_lr(self) -> list[float]:
        """The learning rates at the current count (``last_epoch``)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float | Tensor]:
        """The learning rates this scheduler set last, one per parameter group."""
        return self._last_lr

    # -- groups added later ----------------------------------------------------------

    def _check_new_groups(self) -> None:
        """Refuse groups added with ``add_param_group`` that cannot be scheduled."""
        groups = self.optimizer.param_groups
        for index in range(len(self.base_lrs), len(groups)):
            _check_lr(index, groups[index])
            self._check_added_group(index, groups[index])

    def _add_new_groups(self) -> None:
        """Schedule groups added with ``add_param_group`` since the last step: each starts
        from its own lr as its base."""
        self._check_new_groups()
        groups = self.optimizer.param_groups
        for index in range(len(self.base_lrs), len(groups)):
            group = groups[index]
            group.setdefault("initial_lr", _copy(group["lr"]))
            self.base_lrs.append(_copy(group["initial_lr"]))
            self._added_group(index, group)

    def _check_added_group(self, index: int, group: dict[str, Any]) -> None:
        """Raise if a group added later cannot be scheduled (subclasses); it runs before
        anything changes."""

    def _added_group(self, index: int, group: dict[str, Any]) -> None:
        """Extend per-group settings for a group added later (subclasses)."""

    # -- state -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state as plain data: counts, base and last values, settings."""
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in self._not_state and not key.startswith("_schedule")
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (descend's or torch's), and put the values
        of that moment back into the optimizer, so that it does not matter whether the
        optimizer or the scheduler was rebuilt and loaded first."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict needs a dict from state_dict(), got "
                f"{type(state_dict).__name__}"
            )
        self._check_groups(state_dict)
        self.__dict__.update(
            {key: value for key, value in state_dict.items() if key not in self._not_state}
        )
        self._seen = _progress(self.optimizer)
        self._restore_values()

    def _check_groups(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("_last_lr", state_dict.get("base_lrs"))
        if saved is not None and len(saved) != len(self.optimizer.param_groups):
            raise ValueError(
                f"the state_dict is for {len(saved)} parameter groups but the optimizer has "
                f"{len(self.optimizer.param_groups)}"
            )

    def _restore_values(self) -> None:
        """Write the saved values back into the optimizer's groups."""
        last = getattr(self, "_last_lr", None)
        if last is not None:
            for group, value in zip(self.optimizer.param_groups, last):
                _set(group, "lr", float(value))
