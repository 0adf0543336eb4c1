"""The algorithms: one module per family, each with its class and its pure update functions."""

from descend.optim.adam import Adam, AdamW
from descend.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW"]
