"""Detoxify toxicity scorer from local files only (optional extra: pip install -e '.[detoxify]').

Needs two local things, never the network:
- `checkpoint`: a Detoxify checkpoint file (e.g. `toxic_original-c1212f89.ckpt` for the
  "original" model, from Detoxify's GitHub releases). It is read with
  `torch.load(weights_only=True)`: tensors and plain containers only, never pickled code.
- `config_dir`: a folder with the Hugging Face config and tokenizer files of the checkpoint's
  base model (`bert-base-uncased` for "original", `roberta-base` for "unbiased", ...), as
  Detoxify's own `huggingface_config_path` expects.
The model is built with Detoxify's `get_model_and_tokenizer` from those two; scores are the
sigmoid of its logits, one attribute per class, named as Detoxify names them (toxicity,
severe_toxicity, obscene, threat, insult, identity_attack, ...).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import check_not_lfs_pointer
from vlmsafety.models.loading import resolve_device
from vlmsafety.toxicity.base import ToxicityScorer, register_scorer

# Detoxify's renaming of the Jigsaw class names (detoxify.detoxify.load_checkpoint)
_RENAME = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}


@register_scorer("detoxify")
class DetoxifyScorer(ToxicityScorer):
    """Detoxify's per-class toxicity probabilities for each text."""

    def __init__(
        self,
        name: str = "detoxify",
        checkpoint: str | None = None,
        config_dir: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        attributes: Sequence[str] | None = None,
    ):
        super().__init__(name)
        try:
            from detoxify.detoxify import get_model_and_tokenizer
        except ImportError:
            raise VlmSafetyError(
                f"toxicity.{name} needs the optional package detoxify: pip install -e '.[detoxify]'"
            ) from None
        if not checkpoint or not Path(checkpoint).is_file():
            raise VlmSafetyError(
                f"toxicity.{name}.checkpoint={checkpoint!r} is not a file; download a Detoxify checkpoint "
                "(e.g. toxic_original-c1212f89.ckpt from Detoxify's releases) and set the path"
            )
        if not config_dir or not (Path(config_dir) / "config.json").is_file():
            raise VlmSafetyError(
                f"toxicity.{name}.config_dir={config_dir!r} has no config.json; point it at a local copy of the "
                "checkpoint's base model config and tokenizer (e.g. bert-base-uncased for the original model)"
            )
        # A base-model folder cloned from the hub without git-lfs holds pointers in place of its files.
        for file in [Path(checkpoint), *sorted(p for p in Path(config_dir).iterdir() if p.is_file())]:
            check_not_lfs_pointer(file)
        loaded = _load_checkpoint(Path(checkpoint), name)
        try:
            arch = loaded["config"]["arch"]["args"]
            classes = [_RENAME.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
            self.model, self.tokenizer = get_model_and_tokenizer(
                model_type=str(config_dir), model_name=arch["model_name"], tokenizer_name=arch["tokenizer_name"],
                num_classes=arch["num_classes"], state_dict=loaded["state_dict"], huggingface_config_path=str(config_dir),
            )
        except (KeyError, TypeError) as e:
            raise VlmSafetyError(
                f"toxicity.{name}.checkpoint={checkpoint} is not a Detoxify checkpoint (missing {e}); "
                "it needs config.arch.args, config.dataset.args.classes and state_dict"
            ) from None
        self.classes = classes
        wanted = list(attributes) if attributes else classes
        unknown = [a for a in wanted if a not in classes]
        if unknown:
            raise VlmSafetyError(f"toxicity.{name}.attributes: {unknown[0]!r} is not a class of this checkpoint; classes: {', '.join(classes)}")
        self.attributes = wanted
        self.device = resolve_device(str(device))
        self.model.to(self.device).eval()
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def score(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        index = [self.classes.index(a) for a in self.attributes]
        for k in range(0, len(texts), self.batch_size):
            batch = list(texts[k : k + self.batch_size])
            inputs = self.tokenizer(batch, return_tensors="pt", truncation=True, padding=True).to(self.device)
            probs = torch.sigmoid(self.model(**inputs)[0].float())[:, index]  # [B, attributes]
            out += [{a: round(float(p), 6) for a, p in zip(self.attributes, row, strict=True)} for row in probs.tolist()]
        return out


def _load_checkpoint(path: Path, name: str) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VlmSafetyError(
            f"toxicity.{name}.checkpoint={path} cannot be read as tensors and plain data ({first[:160]}); "
            "use an official Detoxify checkpoint"
        ) from None
