"""`textual_npo`: Negative Preference Optimization (Zhang et al., 2024) against the frozen original model.

npo  = −(2/β) · E_forget[ log σ( −β · (log p_θ(y|x) − log p_ref(y|x)) ) ]
loss = w_f · npo + w_r · NLL(answer | normal request)
with log p(y|x) summed over the answer's tokens, p_ref the original model (LoRA: adapters
disabled), β = 0.1. Unlike gradient ascent the forget term is bounded below (→ 0 as p_θ(y|x) → 0),
so it needs no cap. The retain term is GradDiff's (conf/unlearn/textual_npo.yaml builds on it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlmsafety.unlearn.methods.base import LossContext, TrainBatch, mean, register_method
from vlmsafety.unlearn.methods.textual_graddiff import GradDiff


@register_method("textual_npo")
class NPO(GradDiff):
    needs_reference = True

    def __init__(self, beta: float = 0.1, **kwargs: float):
        super().__init__(**kwargs)
        self.beta = beta

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        lp, n = ctx.logprobs(batch.forget)
        ref_lp, _ = ctx.logprobs(batch.forget, reference=True)
        npo = mean(-(2 / self.beta) * F.logsigmoid(-self.beta * (lp - ref_lp)))
        retain = mean(ctx.nll(batch.normal)) if self.retain_weight else torch.zeros(())
        loss = self.forget_weight * npo + self.retain_weight * retain
        forget_nll = mean((-lp / n.clamp(min=1)).detach())
        return loss, {"forget_nll": float(forget_nll), "npo": npo.item(), "retain_nll": retain.item()}
