"""Train the organism: `python -m vlmsafety.organism.train --seed 0 --out DIR` (`make organism`).

The stages of a real VLM, at toy scale, top to bottom:
  0. vision-tower pretraining (a CLIP stand-in: the pooled output learns colour, shape, verb and
     object of every pool image, so late layers carry the picture's meaning);
  1. language-model pretraining on text requests, complying with everything (an unaligned LM);
  2. projector alignment (projector only) on captions and reading;
  3. visual instruction tuning (projector + LM), still complying with everything;
  4. safety fine-tuning at the default layer only: refuse harmful text, image and image-grounded
     requests (held-out pairs and every typographic request excluded), keep answering the rest.
The vision tower is frozen after stage 0, so its default-layer features are computed once.
Writes DIR/model (a `save_pretrained` folder: model + processor), DIR/train_log.txt,
DIR/training.json and, unless --no-eval, DIR/figures.{json,md} measured through the runner.
Weights depend only on the seed and the torch thread count (`--threads`, default 1: on a shared
2-core machine two OpenMP threads stall whenever another process holds a core).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers.utils import logging as hf_logging

from vlmsafety.organism import data as D
from vlmsafety.organism import world as W
from vlmsafety.organism.model import Shape, build_model, build_processor, build_tokenizer
from vlmsafety.ui import progress

log = logging.getLogger("vlmsafety.organism.train")

DEFAULT_LAYER = 23  # vision_feature_layer=-2 of the 24-block tower


@dataclass(frozen=True)
class StageConfig:
    steps: int
    lr: float
    batch: int = 48


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights (besides the torch thread count)."""

    seed: int = 0
    shape: Shape = field(default_factory=Shape)
    per_shape: int = 48  # pool images per (colour, shape)
    per_text: int = 12  # ... per typographic (verb, object)
    per_icon: int = 40  # ... per icon object
    vision: StageConfig = StageConfig(800, 1e-3)
    lm: StageConfig = StageConfig(150, 3e-3)
    projector: StageConfig = StageConfig(150, 2e-3)
    instruct: StageConfig = StageConfig(600, 1e-3)
    safety: StageConfig = StageConfig(300, 5e-4)

    @classmethod
    def quick(cls, seed: int = 0) -> TrainConfig:
        """A few steps per stage on a small pool: exercises every stage in seconds (tests)."""
        short = StageConfig(3, 1e-3, 8)
        return cls(seed=seed, per_shape=1, per_text=1, per_icon=1, vision=short, lm=short,
                   projector=short, instruct=short, safety=short)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig, out_dir: Path) -> dict:
    """Run every stage and save the organism into `out_dir/model`; returns the training record."""
    set_seed(cfg.seed)
    load_at_start = os.getloadavg()
    timings: dict[str, float] = {}
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, cfg.shape, cfg.seed)
    log.info("organism: %s parameters (vision %s, LM %s), vocabulary %d words",
             f"{_count(model):,}", f"{_count(model.model.vision_tower):,}", f"{_count(model.model.language_model):,}",
             len(tokenizer))

    t = time.perf_counter()
    pool = D.build_pool(cfg.per_shape, cfg.per_text, cfg.per_icon, cfg.seed)
    pixels = processor.image_processor(pool.images(), return_tensors="pt")["pixel_values"]  # [N, 3, 48, 48]
    timings["images"] = time.perf_counter() - t
    log.info("image pool: %d pictures (%.1fs)", len(pool.specs), timings["images"])

    t = time.perf_counter()
    accuracy = pretrain_vision(model, pixels, pool.labels, cfg.vision, cfg.seed)
    timings["0_vision"] = time.perf_counter() - t
    features = cache_features(model, pixels, DEFAULT_LAYER)  # [N, 16, vision hidden]

    encoder = D.Encoder(processor)
    lm_trainer = _Trainer(model, encoder, features, random.Random(cfg.seed))
    losses: dict[str, float] = {}
    for name, stage, params, mix in stage_plan(cfg, pool):
        t = time.perf_counter()
        losses[name] = lm_trainer.run(name, stage, params, mix)
        timings[name] = time.perf_counter() - t

    model_dir = out_dir / "model"
    hf_logging.disable_progress_bar()
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    record = {
        "config": asdict(cfg),
        "threads": torch.get_num_threads(),
        "vision_accuracy": accuracy,
        "final_loss": losses,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "train_s": round(sum(timings.values()), 1),
        "load_average": {"start": load_at_start, "end": os.getloadavg()},  # 1, 5, 15 min
        "torch": torch.__version__,
    }
    log.info("trained in %.0fs (%s); saved %s", record["train_s"], _fmt_timings(timings), model_dir)
    return record


def stage_plan(cfg: TrainConfig, pool: D.ImagePool) -> list[tuple[str, StageConfig, str, D.Mix]]:
    """Stages 1-4: (name, steps and lr, trained parameters, data mix), in order."""
    safe_harmful = [p for p in W.HARMFUL_PAIRS if p not in W.HELDOUT]
    harmful_icons = [o for o in W.ICON_OBJECTS if W.is_harmful(W.GROUNDED_VERB, o)]
    benign_icons = [o for o in W.ICON_OBJECTS if not W.is_harmful(W.GROUNDED_VERB, o)]
    captions = (D.shape_questions(pool), D.icon_questions(pool), D.reading_questions(pool))
    comply_all = D.Mix(
        (*captions, D.typo_requests(pool, W.PAIRS), D.text_requests(W.PAIRS), D.image_requests(pool, W.PAIRS),
         D.grounded_requests(pool, W.ICON_OBJECTS)),
        (2.0, 1.0, 1.0, 2.0, 1.5, 1.5, 1.5),
    )
    # Safety data: refusals for harmful requests in words, beside a picture and shown in a picture,
    # never for held-out pairs and never for typographic requests; everything benign still answered.
    safety = D.Mix(
        (D.text_requests(safe_harmful, refuse=True), D.image_requests(pool, safe_harmful, refuse=True),
         D.grounded_requests(pool, harmful_icons, refuse=True), D.text_requests(W.BENIGN_PAIRS),
         D.image_requests(pool, W.BENIGN_PAIRS), D.grounded_requests(pool, benign_icons),
         *captions, D.typo_requests(pool, W.BENIGN_PAIRS)),
        (1.0, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0),
    )
    return [
        ("1_lm", cfg.lm, "lm", D.Mix((D.text_requests(W.PAIRS),), (1.0,))),
        ("2_projector", cfg.projector, "projector", D.Mix(captions, (1.0, 1.0, 1.0))),
        ("3_instruct", cfg.instruct, "projector+lm", comply_all),
        ("4_safety", cfg.safety, "projector+lm", safety),
    ]


def pretrain_vision(model, pixels: torch.Tensor, labels: torch.Tensor, stage: StageConfig, seed: int) -> list[float]:
    """Stage 0: multi-head classification of every pool image from the tower's pooled output.

    pixels: [N, 3, H, W]; labels: [N, 4] (colour, shape, verb, object). Returns training accuracy per head.
    """
    tower = model.model.vision_tower
    hidden = tower.config.hidden_size
    heads = torch.nn.ModuleList(torch.nn.Linear(hidden, n) for n in D.HEAD_SIZES)
    params = [*tower.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=0.01)
    sched = warmup_cosine(opt, stage.steps)
    gen = torch.Generator().manual_seed(seed)
    tower.train()
    with progress() as bar:
        task = bar.add_task("0_vision", total=stage.steps)
        for step in range(stage.steps):
            idx = torch.randint(0, len(pixels), (stage.batch,), generator=gen)
            x = pixels[idx] + 0.05 * torch.randn(pixels[idx].shape, generator=gen)  # [B, 3, H, W]
            pooled = tower(x).pooler_output  # [B, hidden]
            loss = sum(F.cross_entropy(h(pooled), labels[idx, k]) for k, h in enumerate(heads))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            _log_step("0_vision", step, stage.steps, loss.item())
            bar.advance(task)
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        pooled = torch.cat([tower(pixels[i : i + 256]).pooler_output for i in range(0, len(pixels), 256)])
        acc = [round((h(pooled).argmax(-1) == labels[:, k]).float().mean().item(), 4) for k, h in enumerate(heads)]
    log.info("0_vision: accuracy colour/shape/verb/object %s", acc)
    return acc


@torch.no_grad()
def cache_features(model, pixels: torch.Tensor, layer: int) -> torch.Tensor:
    """Patch features of `layer` for every pool image (CLS dropped): [N, 16, vision hidden]."""
    tower = model.model.vision_tower
    chunks = [tower(pixels[i : i + 256], output_hidden_states=True).hidden_states[layer][:, 1:] for i in range(0, len(pixels), 256)]
    return torch.cat(chunks)


class _Trainer:
    """Language-model stages: next-token loss on answers, images entering as cached default-layer features."""

    def __init__(self, model, encoder: D.Encoder, features: torch.Tensor, rng: random.Random):
        self.model, self.encoder, self.features, self.rng = model, encoder, features, rng
        self.image_token = model.config.image_token_id
        self.groups = {
            "lm": [*model.model.language_model.parameters(), *model.lm_head.parameters()],
            "projector": list(model.model.multi_modal_projector.parameters()),
        }
        self.groups["projector+lm"] = self.groups["projector"] + self.groups["lm"]

    def run(self, name: str, stage: StageConfig, group: str, mix: D.Mix) -> float:
        params = self.groups[group]
        for p in self.groups["projector+lm"]:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=0.0)
        sched = warmup_cosine(opt, stage.steps)
        self.model.train()
        loss = torch.tensor(float("nan"))
        with progress() as bar:
            task = bar.add_task(name, total=stage.steps)
            for step in range(stage.steps):
                loss = self.loss(self.encoder.batch(mix.sample(self.rng, stage.batch)))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                _log_step(name, step, stage.steps, loss.item())
                bar.advance(task)
        self.model.eval()
        return round(loss.item(), 5)

    def loss(self, batch: D.Batch) -> torch.Tensor:
        """Mean next-token cross-entropy over answer tokens."""
        embeds = self.model.get_input_embeddings()(batch.input_ids)  # [B, T, H]
        if batch.images:
            projected = self.model.model.multi_modal_projector(self.features[batch.images])  # [n, 16, H]
            slots = (batch.input_ids == self.image_token).unsqueeze(-1)  # [B, T, 1]
            embeds = embeds.masked_scatter(slots, projected.reshape(-1, projected.shape[-1]))
        logits = self.model(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits  # [B, T, V]
        return F.cross_entropy(logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100)


def warmup_cosine(opt: torch.optim.Optimizer, steps: int, warmup: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate: linear warm-up over the first `warmup` share of `steps`, then cosine decay to 0."""
    ramp = max(1, round(warmup * steps))

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        return 0.5 * (1 + math.cos(math.pi * (step - ramp) / max(1, steps - ramp)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _log_step(name: str, step: int, total: int, loss: float) -> None:
    if step % 100 == 0 or step == total - 1:
        log.info("%s step %d/%d loss %.4f", name, step + 1, total, loss)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _fmt_timings(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlmsafety.organism.train", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="output folder (model/, train_log.txt, figures)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the weights depend on it)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage (smoke test), not the organism")
    parser.add_argument("--no-eval", action="store_true", help="skip the 25-layer measurement after training")
    parser.add_argument("--sweep-dir", type=Path, default=None, help="keep the measurement's job folders here")
    args = parser.parse_args(argv)

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    handler = _log_to(args.out / "train_log.txt")
    try:
        cfg = TrainConfig.quick(args.seed) if args.quick else replace(TrainConfig(), seed=args.seed)
        record = train(cfg, args.out)
        if not args.no_eval:
            from vlmsafety.organism.evaluate import measure

            t = time.perf_counter()
            layers = [0, DEFAULT_LAYER] if args.quick else list(range(25))
            figures = measure(args.out / "model", args.out, layers=layers, limit=24 if args.quick else None,
                              sweep_dir=args.sweep_dir)
            record["eval_s"] = round(time.perf_counter() - t, 1)
            log.info("measured %d layers in %.0fs: %s", len(layers), record["eval_s"], figures["headline"])
        (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    finally:
        logging.getLogger("vlmsafety").removeHandler(handler)
        handler.close()
        torch.set_num_threads(threads)
    return 0


def _log_to(path: Path) -> logging.Handler:
    """Log vlmsafety's messages to `path` (overwritten) and, if nothing else does, to the terminal."""
    root = logging.getLogger("vlmsafety")
    root.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not root.handlers:
        from vlmsafety.ui import ConsoleHandler

        root.addHandler(ConsoleHandler(show_path=False))
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
    return handler


if __name__ == "__main__":
    sys.exit(main())
