"""ReduceLROnPlateau: the one scheduler driven by a metric rather than the count."""

from __future__ import annotations

import math
import warnings
from typing import Literal, SupportsFloat

from torch.optim import Optimizer
from torch.optim import lr_scheduler as _torch

from descend.lr_scheduler._base import (
    EPOCH_DEPRECATION_WARNING,
    LRScheduler,
    _check_int,
    _check_optimizer,
    _check_real,
    _copy,
    _per_group,
    _progress,
    _set,
)

# --------------------------------------------------------------------------------------
# Plateaus
# --------------------------------------------------------------------------------------


class ReduceLROnPlateau(LRScheduler, _torch.ReduceLROnPlateau):
    """Multiplies the learning rate by ``factor`` when a metric has stopped improving for
    ``patience`` steps; ``step(metric)``. It is also a
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``, so tools that look for one (to pass
    the monitored metric) find it."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        _check_optimizer(optimizer)
        if not isinstance(factor, (int, float)) or not factor < 1.0:
            raise ValueError(f"factor must be < 1, got {factor!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        _check_real("factor", factor)
        _check_int("patience", patience, 0)
        _check_int("cooldown", cooldown, 0)
        _check_real("threshold", threshold)
        _check_real("eps", eps)
        if not isinstance(min_lr, (list, tuple)):
            _check_real("min_lr", min_lr)
        self.factor = factor
        if isinstance(min_lr, (list, tuple)):
            self.min_lrs = _per_group("min_lr", optimizer, min_lr)
            self.default_min_lr = None
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.base_lrs = [_copy(group["lr"]) for group in optimizer.param_groups]
        self._attach(optimizer, 0)
        self._record_lrs()
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _restart(self) -> None:
        self.last_epoch = 0
        self._reset()
        self._record_lrs()

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record ``metrics`` (the monitored value) and reduce the lr on a plateau."""
        self._seen = _progress(self.optimizer)
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._step(metrics, epoch)

    def _step(self, metrics: SupportsFloat | None, epoch: int | None = None) -> None:
        if metrics is None:
            raise TypeError(
                "ReduceLROnPlateau.step needs the monitored metric: step(metrics) (inside "
                "SequentialLR or ChainedScheduler too)"
            )
        try:
            current = float(metrics)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(
                f"metrics must be a number, got {type(metrics).__name__} {metrics!r}"
            ) from None
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._record_lrs()

    def _reduce_lr(self, epoch: int | None = None) -> None:
        groups = self.optimizer.param_groups
        if len(self.min_lrs) < len(groups):
            if self.default_min_lr is None:
                raise ValueError(
                    f"the optimizer has {len(groups)} parameter groups but ReduceLROnPlateau "
                    f"was given {len(self.min_lrs)} min_lr values: append the new groups' "
                    "to .min_lrs"
                )
            self.min_lrs += [self.default_min_lr] * (len(groups) - len(self.min_lrs))
        for group, min_lr in zip(groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                _set(group, "lr", new)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than the threshold."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    _is_better = is_better  # torch's name

    def get_lr(self) -> list[float]:
        return [float(group["lr"]) for group in self.optimizer.param_groups]
