"""`textual`: paper 2's objective (after Yao et al., "Large Language Model Unlearning"), text only.

loss = −w_f · NLL(harmful answer | harmful request)      (gradient ascent, capped per example)
       + w_h · NLL(safe answer | the same request)        (helpful answer or refusal)
       + w_kl · KL(original ‖ current) on normal data     (stay close to the original model)
with w_f = 0.5, w_h = 1, w_kl = 1 by default (conf/unlearn/textual.yaml).
"""

from __future__ import annotations

import torch

from vlmsafety.unlearn.methods.base import LossContext, TrainBatch, UnlearnMethod, mean, register_method


@register_method("textual")
class Textual(UnlearnMethod):
    needs_reference = True

    def __init__(self, forget_weight: float = 0.5, helpful_weight: float = 1.0, kl_weight: float = 1.0):
        self.forget_weight, self.helpful_weight, self.kl_weight = forget_weight, helpful_weight, kl_weight

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        forget, forget_raw = ctx.forget_nll(batch.forget)
        helpful = mean(ctx.nll(batch.helpful))
        kl = mean(ctx.kl(batch.normal)) if self.kl_weight else torch.zeros(())
        loss = -self.forget_weight * mean(forget) + self.helpful_weight * helpful + self.kl_weight * kl
        return loss, {"forget_nll": float(mean(forget_raw)), "helpful_nll": helpful.item(), "kl": kl.item()}
