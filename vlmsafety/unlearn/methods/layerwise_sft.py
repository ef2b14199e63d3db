"""`layerwise_sft`: safety fine-tuning that shows the language model the features of many vision layers.

loss = w_r · NLL(refusal | harmful request + image, features of a sampled layer L)
       + w_b · NLL(answer | benign request + image, features of a sampled layer L)
       + w_kl · KL(original ‖ current) on the same normal examples at the trained default layer
Every image example's L is drawn by the loop from `unlearn.train.layers` (uniform over 0..N by
default); text-only examples have no layer. The KL term anchors default-layer behaviour to the
original model. Paper 1's L-PPO samples layers during safety training too; here the signal is the
refusal's token loss (no reward model, no PPO).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from vlmsafety.unlearn.methods.base import LossContext, TrainBatch, UnlearnMethod, mean, register_method


@register_method("layerwise_sft")
class LayerwiseSFT(UnlearnMethod):
    needs_reference = True
    needs_images = True
    samples_layers = True

    def __init__(self, refusal_weight: float = 1.0, benign_weight: float = 1.0, kl_weight: float = 1.0):
        self.refusal_weight, self.benign_weight, self.kl_weight = refusal_weight, benign_weight, kl_weight

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        return self.anchored(ctx, batch)

    def anchored(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The refusal, benign and KL terms (a term whose weight is 0 is not computed)."""
        zero = torch.zeros(())
        refusal = mean(ctx.nll(batch.helpful)) if self.refusal_weight else zero
        benign = mean(ctx.nll(batch.normal)) if self.benign_weight else zero
        at_default = [replace(e, layer=None) for e in batch.normal]
        kl = mean(ctx.kl(at_default)) if self.kl_weight else zero
        loss = self.refusal_weight * refusal + self.benign_weight * benign + self.kl_weight * kl
        return loss, {"helpful_nll": refusal.item(), "benign_nll": benign.item(), "kl": kl.item()}
