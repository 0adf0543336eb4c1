"""The algorithms: one module per family, each with its class and its pure update functions."""

from descend.optim.adadelta import Adadelta
from descend.optim.adafactor import Adafactor
from descend.optim.adagrad import Adagrad
from descend.optim.adam import Adam, AdamW
from descend.optim.adamax import Adamax
from descend.optim.asgd import ASGD
from descend.optim.lbfgs import LBFGS
from descend.optim.muon import Muon
from descend.optim.nadam import NAdam
from descend.optim.radam import RAdam
from descend.optim.rmsprop import RMSprop
from descend.optim.rprop import Rprop
from descend.optim.sgd import SGD
from descend.optim.sparse_adam import SparseAdam

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
    "RAdam",
    "RMSprop",
    "Rprop",
    "SparseAdam",
]
