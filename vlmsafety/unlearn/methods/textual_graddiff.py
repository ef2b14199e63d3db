"""`textual_graddiff`: gradient difference.

loss = −w_f · NLL(harmful answer | harmful request) + w_r · NLL(answer | normal request)
(forget NLL capped per example): ascend on what to forget, descend on what to retain.
"""

from __future__ import annotations

import torch

from vlmsafety.unlearn.methods.base import LossContext, TrainBatch, UnlearnMethod, mean, register_method


@register_method("textual_graddiff")
class GradDiff(UnlearnMethod):
    def __init__(self, forget_weight: float = 1.0, retain_weight: float = 1.0):
        self.forget_weight, self.retain_weight = forget_weight, retain_weight

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        forget, forget_raw = ctx.forget_nll(batch.forget)
        retain = mean(ctx.nll(batch.normal)) if self.retain_weight else torch.zeros(())
        loss = -self.forget_weight * mean(forget) + self.retain_weight * retain
        return loss, {"forget_nll": float(mean(forget_raw)), "retain_nll": retain.item()}
