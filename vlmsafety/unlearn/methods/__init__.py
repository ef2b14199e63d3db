"""Unlearning methods, one module each, registered by name (`unlearn.method`); each only defines its loss."""

from vlmsafety.unlearn.methods.base import (
    METHODS,
    LossContext,
    TrainBatch,
    UnlearnMethod,
    get_method,
    register_method,
)

__all__ = ["METHODS", "LossContext", "TrainBatch", "UnlearnMethod", "get_method", "register_method"]
