"""The algorithms: one module per family, each with its class and its pure update functions."""

from descend.optim.adadelta import Adadelta
from descend.optim.adagrad import Adagrad
from descend.optim.adam import Adam, AdamW
from descend.optim.adamax import Adamax
from descend.optim.rmsprop import RMSprop
from descend.optim.sgd import SGD

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "RMSprop"]
