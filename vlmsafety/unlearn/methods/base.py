"""What every unlearning method shares: the quantities a loss combines, and the method registry.

In the style of open-unlearning: `LossContext` computes per-example answer NLLs (current model and
frozen reference) and the KL to the reference; a method (one small class per file) only says how
to combine them in `loss`. Conventions, in nats:
- NLL(y | x) of one example = mean over its answer tokens of −log p(token); a term is the mean
  over the batch's examples (0 when the batch has none);
- log p(y | x) = the SUM over answer tokens (NPO's sequence log-likelihood);
- KL(reference ‖ current) of one example = mean over its answer positions of the full-vocabulary KL.
The forget NLL that a loss ascends is capped per example at `forget_nll_cap`: above the cap its
gradient is zero, so gradient ascent cannot push the model past "no better than a uniform guess".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from vlmsafety.models.base import FamilyAdapter
from vlmsafety.registry import Registry
from vlmsafety.unlearn.batches import (
    ImageEncoder,
    ImageLoader,
    Meter,
    answer_logprobs,
    make_batches,
    token_kl,
)
from vlmsafety.unlearn.data import Example

Logits = Callable[[Any], torch.Tensor]  # batch -> [answer tokens, vocab]


@dataclass
class TrainBatch:
    """One optimisation micro-batch: harmful requests with harmful answers (forget), the same requests
    with safe answers (helpful), and normal examples."""

    forget: list[Example] = field(default_factory=list)
    helpful: list[Example] = field(default_factory=list)
    normal: list[Example] = field(default_factory=list)


class LossContext:
    """The current model, the frozen reference and the cost meter, behind per-example quantities.

    current / reference: batch → answer-position logits (`forward_logits`); the reference runs
    without gradients (LoRA: the same model with its adapters disabled; full fine-tuning: a copy).
    encode: how images of examples with a `layer` are encoded (the worker's cache in a job; default
    the adapter's `encode_images`).
    """

    def __init__(
        self, adapter: FamilyAdapter, current: Logits, reference: Logits | None, meter: Meter,
        load_image: ImageLoader, forget_nll_cap: float = math.inf, encode: ImageEncoder | None = None,
    ):
        self.adapter = adapter
        self.current = current
        self.reference = reference
        self.meter = meter
        self.load_image = load_image
        self.forget_nll_cap = forget_nll_cap
        self.encode = encode

    def _per_example(self, examples: list[Example], compute: Callable[[Any], torch.Tensor], grad: bool) -> torch.Tensor:
        """compute(batch) -> [batch size, ...] for each modality's batch, reassembled in `examples` order."""
        parts: list[tuple[list[int], torch.Tensor]] = []
        for idx, batch in make_batches(self.adapter, examples, self.load_image, self.encode):
            self.meter.add(batch, grad)
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                parts.append((idx, compute(batch)))
        stacked = torch.cat([values for _, values in parts])
        order = torch.tensor([i for idx, _ in parts for i in idx])
        return stacked[torch.argsort(order).to(stacked.device)]

    def logprobs(self, examples: list[Example], reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(answer | prompt) summed over answer tokens [B], answer token counts [B]).

        reference: read the frozen reference (no gradients) instead of the current model.
        """
        if not examples:
            return torch.zeros(0), torch.zeros(0)
        model = self._reference() if reference else self.current

        def compute(batch: Any) -> torch.Tensor:
            lp, n = answer_logprobs(model(batch), batch)
            return torch.stack([lp, n.to(lp.dtype)], dim=1)  # [B, 2]

        both = self._per_example(examples, compute, grad=not reference)
        return both[:, 0], both[:, 1]

    def nll(self, examples: list[Example]) -> torch.Tensor:
        """Per example: mean NLL of its answer tokens under the current model [B] (with gradients)."""
        lp, n = self.logprobs(examples)
        return -lp / n.clamp(min=1)

    def forget_nll(self, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-example forget NLL capped at `forget_nll_cap` [B], the uncapped values [B], detached)."""
        nll = self.nll(examples)
        return nll.clamp(max=self.forget_nll_cap), nll.detach()

    def kl(self, examples: list[Example]) -> torch.Tensor:
        """Per example: KL(reference ‖ current) over its answer positions [B] (gradients through current)."""
        if not examples:
            return torch.zeros(0)
        reference = self._reference()

        def compute(batch: Any) -> torch.Tensor:
            with torch.no_grad():
                ref = reference(batch)
            self.meter.add(batch, grad=False)  # the reference pass
            return token_kl(ref, self.current(batch), batch)

        return self._per_example(examples, compute, grad=True)

    def _reference(self) -> Logits:
        if self.reference is None:
            raise RuntimeError("this method needs the frozen reference model, but none was set up")
        return self.reference


def mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over examples; 0 for an empty batch (a term with no examples contributes nothing)."""
    return t.mean() if t.numel() else t.new_zeros(())


class UnlearnMethod:
    """Base of every method: subclasses set `name` (by registering) and implement `loss`.

    `needs_reference` says whether the loss reads the frozen reference (KL, NPO), so that full
    fine-tuning keeps a copy of the original model only when it must. `samples_layers`: the loop
    gives every image example of a step a vision layer drawn from `unlearn.train.layers`
    (`Example.layer`; a harmful request's forget and helpful examples share theirs).
    """

    name: ClassVar[str] = "method"
    needs_reference: ClassVar[bool] = False
    needs_images: ClassVar[bool] = False  # True: the recipe must attach images (unlearn.image != none)
    samples_layers: ClassVar[bool] = False  # True: image examples come with sampled vision layers

    def loss(self, ctx: LossContext, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """(scalar loss to minimise, the terms to log as floats; always including `forget_nll`)."""
        raise NotImplementedError


def _load_builtins() -> None:
    from vlmsafety.unlearn.methods import (  # noqa: F401  (register the shipped methods)
        layerwise_dpo,
        layerwise_sft,
        multimodal,
        textual,
        textual_ga,
        textual_graddiff,
        textual_npo,
    )


METHODS: Registry[type[UnlearnMethod]] = Registry("unlearning method", _load_builtins)


def register_method(name: str) -> Callable[[type[UnlearnMethod]], type[UnlearnMethod]]:
    def wrap(cls: type[UnlearnMethod]) -> type[UnlearnMethod]:
        cls.name = name
        return METHODS.register(name)(cls)

    return wrap


def get_method(name: str) -> type[UnlearnMethod]:
    return METHODS.get(name, where="unlearn.method")
