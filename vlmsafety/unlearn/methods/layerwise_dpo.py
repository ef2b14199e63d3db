"""`layerwise_dpo`: DPO (Rafailov et al., 2023) over sampled vision layers, chosen = refusal, rejected = harmful answer.

dpo  = −E[ log σ( β · ((log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))) ) ]
loss = w_dpo · dpo + `layerwise_sft`'s terms (refusal NLL, benign NLL at sampled layers, KL at the default layer)
with log π(y|x) summed over the answer's tokens, π_ref the original model (LoRA: adapters disabled),
and x one harmful request whose image reads the features of the layer sampled for it (chosen and
rejected share it). The YAML sets the refusal NLL's weight to 0: DPO alone moves the refusal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlmsafety.unlearn.methods.base import LossContext, TrainBatch, mean, register_method
from vlmsafety.unlearn.methods.layerwise_sft import LayerwiseSFT


@register_method("layerwise_dpo")
class LayerwiseDPO(LayerwiseSFT):
    def __init__(self, beta: float = 0.1, dpo_weight: float = 1.0, **kwargs: float):
        super().__init__(**kwargs)
        self.beta, self.dpo_weight = beta, dpo_weight

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        rejected = {e.id: e for e in batch.forget}
        pairs = [(chosen, rejected[chosen.id]) for chosen in batch.helpful if chosen.id in rejected]
        examples = [c for c, _ in pairs] + [r for _, r in pairs]  # one pass for both sides
        lp, n = ctx.logprobs(examples)
        ref, _ = ctx.logprobs(examples, reference=True)
        k = len(pairs)
        margin = self.beta * ((lp[:k] - ref[:k]) - (lp[k:] - ref[k:]))  # [pairs]
        dpo = mean(-F.logsigmoid(margin))
        rest, terms = self.anchored(ctx, batch)
        loss = self.dpo_weight * dpo + rest
        nll = (-lp / n.clamp(min=1)).detach()
        return loss, {"dpo": dpo.item(), "margin": float(mean(margin.detach())), "chosen_nll": float(mean(nll[:k])),
                      "rejected_nll": float(mean(nll[k:])), **terms}
