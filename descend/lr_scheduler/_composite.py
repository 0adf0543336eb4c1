"""SequentialLR and ChainedScheduler: schedulers driven by one."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any, SupportsFloat

from torch.optim import Optimizer

from descend.lr_scheduler._base import (
    LRScheduler,
    _check_int,
    _check_milestones,
    _check_optimizer,
    _copy,
    _progress,
    _set,
)
from descend.lr_scheduler._plateau import ReduceLROnPlateau

# --------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------


def _check_children(kind: str, optimizer: Optimizer, schedulers: Sequence[Any]) -> None:
    if not isinstance(schedulers, (list, tuple)) or len(schedulers) < 1:
        raise ValueError(f"{kind} needs a non-empty list of schedulers, got {schedulers!r}")
    for index, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(
                f"{kind}: schedulers[{index}] must be a descend.lr_scheduler scheduler, got "
                f"{type(scheduler).__name__}"
            )
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                f"{kind}: schedulers[{index}] ({type(scheduler).__name__}) drives another "
                "optimizer; all must drive the same one"
            )


def _step_child(scheduler: LRScheduler, metrics: Any) -> None:
    """Advance a child by one step (its parent has decided that the step counts)."""
    scheduler._seen = _progress(scheduler.optimizer)
    if isinstance(scheduler, (ReduceLROnPlateau, _Composite)):
        scheduler._step(metrics)
    else:
        scheduler._step_count += 1
        scheduler._update_lr()


class _Composite(LRScheduler):
    """Shared by SequentialLR and ChainedScheduler: schedulers driven by one."""

    _not_state = (*LRScheduler._not_state, "_schedulers")
    _schedulers: list[LRScheduler]

    def step(self, metrics: SupportsFloat | None = None) -> None:  # type: ignore[override]
        """Advance one step; ``metrics`` goes to ReduceLROnPlateau children."""
        if self._should_skip():
            return
        self._step_count += 1
        self._step(metrics)

    def _step(self, metrics: Any = None) -> None:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        children = state_dict.pop("_schedulers", None)
        if children is None or len(children) != len(self._schedulers):
            raise ValueError(
                f"the state_dict has {None if children is None else len(children)} schedulers' "
                f"states; this {type(self).__name__} has {len(self._schedulers)}"
            )
        for scheduler, child in zip(self._schedulers, children):
            scheduler.load_state_dict(child)
        super().load_state_dict(state_dict)


class SequentialLR(_Composite):
    """Runs ``schedulers`` one after another: ``schedulers[i]`` from ``milestones[i - 1]``
    on, started again from its own step 0 and the base learning rates there. They may be
    any descend schedulers, SequentialLR and ReduceLROnPlateau included (``step(metrics)``
    passes the metric on)."""

    def __init__(
        self,
        optimizer: Optimizer,
        schedulers: list[LRScheduler],
        milestones: list[int],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        _check_children("SequentialLR", optimizer, schedulers)
        _check_int("last_epoch", last_epoch, -1)
        milestones = _check_milestones(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR needs one milestone fewer than schedulers: got "
                f"{len(schedulers)} schedulers and milestones {milestones!r}"
            )
        if any(b <= a for a, b in itertools.pairwise(milestones)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
        self._schedulers = list(schedulers)
        self._milestones = milestones
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", _copy(group["lr"]))
        self.base_lrs = [_copy(group["initial_lr"]) for group in optimizer.param_groups]
        self._attach(optimizer, last_epoch + 1)
        self._start_child(bisect.bisect_right(milestones, self.last_epoch))

    def _start_child(self, index: int) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            _set(group, "lr", float(base))
        self._schedulers[index]._restart()
        self._record_lrs()

    def _restart(self) -> None:
        self.last_epoch = 0
        self._start_child(0)

    def _step(self, metrics: Any = None) -> None:
        self._add_new_groups()
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            self._start_child(index)
        else:
            _step_child(self._schedulers[index], metrics)
            self._record_lrs()


class ChainedScheduler(_Composite):
    """Steps all ``schedulers`` together, each changing what the ones before it set
    (their effects multiply). ReduceLROnPlateau may be among them."""

    def __init__(
        self, schedulers: Sequence[LRScheduler], optimizer: Optimizer | None = None
    ) -> None:
        if not isinstance(schedulers, (list, tuple)) or not schedulers:
            raise ValueError(
                f"ChainedScheduler needs a non-empty list of schedulers, got {schedulers!r}"
            )
        if optimizer is None and not isinstance(schedulers[0], LRScheduler):
            raise TypeError(
                "ChainedScheduler: schedulers[0] must be a descend.lr_scheduler scheduler, got "
                f"{type(schedulers[0]).__name__}"
            )
        optimizer = schedulers[0].optimizer if optimizer is None else optimizer
        _check_optimizer(optimizer)
        _check_children("ChainedScheduler", optimizer, schedulers)
        self._schedulers = list(schedulers)
        self.base_lrs = [
            _copy(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups
        ]
        self._attach(optimizer, 0)
        self._record_lrs()

    def _restart(self) -> None:
        self.last_epoch = 0
        for scheduler in self._schedulers:
            scheduler._restart()
        self._record_lrs()

    def _step(self, metrics: Any = None) -> None:
        self.last_epoch += 1
        for scheduler in self._schedulers:
            _step_child(scheduler, metrics)
        self._record_lrs()
