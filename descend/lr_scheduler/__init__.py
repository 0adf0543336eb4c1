"""Every scheduler of torch.optim.lr_scheduler, as thin drivers over ``descend.schedules``.

Same names, signatures, defaults and values as torch 2.13's, and they are
:class:`torch.optim.lr_scheduler.LRScheduler` instances: they drive descend and torch
optimizers alike, and tools that expect torch schedulers accept them. Each one keeps a
count and asks a pure schedule for the value at that count. What differs is what torch
users keep reporting:

- **Resuming** works whatever you rebuild first: ``load_state_dict`` puts the learning
  rates (and cycled momenta) of the saved moment back into the optimizer, so a scheduler
  built after loading the optimizer cannot leave a wrong lr behind.
- **Skipped steps do not count.** When every ``optimizer.step()`` since the last
  ``scheduler.step()`` was skipped (``torch.amp.GradScaler`` found inf or NaN gradients;
  descend optimizers report this), the schedule does not advance, and there is no
  "``lr_scheduler.step()`` before ``optimizer.step()``" warning for such a step.
- **Groups added later are scheduled**, from their own lr at the moment they are added.
- **Composition is total:** :class:`SequentialLR` and :class:`ChainedScheduler` nest, and
  take :class:`ReduceLROnPlateau` (``step(metrics)`` passes the metric on), so warmup
  followed by reduce-on-plateau is one scheduler.
- **Everything pickles**, and ``state_dict()`` holds plain data only (numbers, lists), so
  ``torch.load(weights_only=True)`` reads it back.
- **Tensor learning rates** stay tensors, changed in place, so a compiled step that reads
  them does not recompile.

How schedulers compose is torch's: most of them scale the current lr by the change of
their own factor, ``lr ← floor + (lr - floor) · u(t) / u(t-1)``, so two of them stepped
back to back multiply; LambdaLR, CyclicLR, OneCycleLR and CosineAnnealingWarmRestarts set
the lr outright.
"""

from descend.lr_scheduler._base import LRScheduler
from descend.lr_scheduler._composite import ChainedScheduler, SequentialLR
from descend.lr_scheduler._factor import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)
from descend.lr_scheduler._outright import (
    CosineAnnealingWarmRestarts,
    CyclicLR,
    LambdaLR,
    MultiplicativeLR,
    OneCycleLR,
)
from descend.lr_scheduler._plateau import ReduceLROnPlateau

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]

# Public classes say they live here, which is where users import them from (and what
# pickles record).
for _name in __all__:
    globals()[_name].__module__ = __name__
