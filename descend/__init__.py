"""descend: optimizers for PyTorch models; drop-in for torch.optim, any hyperparameter schedulable.

Every optimizer is a :class:`torch.optim.Optimizer` with torch.optim's names, defaults and
state keys; its math is a pure function over lists of tensors (see :mod:`descend.optim`).
:mod:`descend.schedules` holds pure schedules for any hyperparameter, and
:mod:`descend.lr_scheduler` torch's schedulers, built on them.
"""

from descend import lr_scheduler, schedules
from descend.optim import (
    ASGD,
    LBFGS,
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Muon,
    NAdam,
    RAdam,
    RMSprop,
    Rprop,
    SparseAdam,
)
from descend.optimizer import Optimizer

__version__ = "0.1.0"

__all__ = [
    "ASGD",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Muon",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SparseAdam",
    "__version__",
    "lr_scheduler",
    "schedules",
]
