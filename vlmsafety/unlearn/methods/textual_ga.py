"""`textual_ga`: gradient ascent only.

loss = −w_f · NLL(harmful answer | harmful request), capped per example at the forget NLL cap.
Nothing holds the rest of the model in place: the baseline that shows what the other terms buy.
"""

from __future__ import annotations

import torch

from vlmsafety.unlearn.methods.base import LossContext, TrainBatch, UnlearnMethod, mean, register_method


@register_method("textual_ga")
class GradientAscent(UnlearnMethod):
    def __init__(self, forget_weight: float = 1.0):
        self.forget_weight = forget_weight

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        forget, forget_raw = ctx.forget_nll(batch.forget)
        return -self.forget_weight * mean(forget), {"forget_nll": float(mean(forget_raw))}
