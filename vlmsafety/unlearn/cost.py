"""The compute an unlearning run costs: an estimated FLOP count from the tokens and images it processed.

The estimate (dense matmuls only; attention's sequence-length term, norms and softmax are left out,
which is small next to the weights at the sequence lengths used here):
- forward through the language model: 2 · N_lm FLOPs per token, N_lm = its weights without the
  input embedding (a lookup) plus the output head; every token the attention mask counts (text and
  the image tokens a LLaVA-style model splices in);
- forward through the vision side (encoder + projector): 2 · N_vision per vision patch; it runs
  without gradients (frozen), in reference passes as in training passes;
- backward through the language model, for passes with gradients: the gradients flow from the
  loss down through every layer above the lowest adapted one (the whole LM here), so the
  activation-gradient matmuls cost ≈ 1× the forward (2 · N_lm per token); the weight-gradient
  matmuls cost another ≈ 1× for weights that train (full fine-tuning: backward ≈ 2× forward)
  and almost nothing for frozen weights (LoRA: backward ≈ 1× forward, plus 4 · N_lora per token
  for the adapters' own weight gradients, and 2 · N_lora for their forward). So "6 · N_trainable ·
  tokens" is wrong for LoRA: it counts the trainable adapters, not the frozen weights the
  gradients pass through;
- gradient checkpointing recomputes the forward of passes with gradients once more;
- reference passes (KL, NPO) are forwards without backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmsafety.models.base import FamilyAdapter
from vlmsafety.unlearn.batches import Meter
from vlmsafety.unlearn.model_setup import count_parameters


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts that drive the estimate."""

    lm: int  # language model without the input embedding, plus the output head
    vision: int  # everything else: vision encoder and projector
    trainable: int


def model_sizes(adapter: FamilyAdapter, n_trainable: int) -> ModelSizes:
    model = adapter.model
    lm_module = model.get_submodule(adapter.language_model_prefix)
    head = model.get_output_embeddings()
    embed = lm_module.get_input_embeddings()
    lm = count_parameters(lm_module) - count_parameters(embed) + (count_parameters(head) if head is not None else 0)
    vision = count_parameters(model) - count_parameters(lm_module) - (count_parameters(head) if head is not None else 0)
    return ModelSizes(lm=lm, vision=vision, trainable=n_trainable)


def estimate_flops(sizes: ModelSizes, meter: Meter, mode: str, gradient_checkpointing: bool = False) -> dict[str, Any]:
    """FLOPs of the passes `meter` counted, by part (see the module docstring for the formula)."""
    grad_tokens, ref_tokens = meter.tokens["grad"], meter.tokens["no_grad"]
    lm_forward = 2 * sizes.lm * (grad_tokens + ref_tokens)
    backward = (2 if mode == "full" else 1) * 2 * sizes.lm * grad_tokens
    adapters = 6 * sizes.trainable * grad_tokens if mode == "lora" else 0
    recompute = 2 * sizes.lm * grad_tokens if gradient_checkpointing else 0
    vision = 2 * sizes.vision * (meter.vision_tokens["grad"] + meter.vision_tokens["no_grad"])
    parts = {"lm_forward": lm_forward, "lm_backward": backward, "adapters": adapters, "recompute": recompute, "vision": vision}
    return {"total": sum(parts.values()), **parts}


def cost_summary(sizes: ModelSizes, meter: Meter, mode: str, gradient_checkpointing: bool, seconds: float, on_gpu: bool) -> dict[str, Any]:
    """What metrics.json reports as the training cost of one recipe."""
    return {
        "flops": estimate_flops(sizes, meter, mode, gradient_checkpointing),
        "tokens": dict(meter.tokens),
        "vision_tokens": dict(meter.vision_tokens),
        "images": meter.images,
        "forward_passes": meter.forward_passes,
        "params": {"lm": sizes.lm, "vision": sizes.vision, "trainable": sizes.trainable},
        "train_device_hours": seconds / 3600,
        "train_gpu_hours": seconds / 3600 if on_gpu else 0.0,
    }
