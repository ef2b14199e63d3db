"""Textual vs multimodal unlearning: seconds per optimizer step and the work each step does.

In process, on the default model, through the real loop (`vlmsafety.unlearn.trainer.train`) with each
recipe's own config (`task=unlearn unlearn=<recipe>`: its default data, batch size and LoRA), a few
steps each with early stop off. Per-step seconds and tokens come from the loop's own train_log.jsonl,
so the NLL measurements before and after the loop are not timed. The first step of each run is a
warm-up and left out; the recipes take turns over `rounds` runs and each keeps its lowest median
(the machine is shared: the least disturbed run).

    .venv/bin/python -m benchmarks.unlearning    # this measurement alone (make bench runs it too)
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig

from vlmsafety.tasks.unlearn import build_method, trained_in_place
from vlmsafety.unlearn.cost import estimate_flops, model_sizes
from vlmsafety.unlearn.data import build_data
from vlmsafety.unlearn.trainer import TRAIN_LOG, train
from vlmsafety.worker import get_worker

RECIPES = ("textual", "multimodal")


@dataclass
class UnlearnRun:
    recipe: str
    batch_size: int  # harmful requests (forget + helpful) and normal examples per step
    steps: int  # timed steps per run (warm-up left out)
    seconds_per_step: float  # median over the timed steps of the least disturbed run
    tokens_per_step: float  # LM tokens through the model (passes with and without gradients)
    images_per_step: float
    vision_tokens_per_step: float  # patches through the vision encoder
    flops_per_step: float  # the cost estimate of vlmsafety/unlearn/cost.py


def step_costs(compose: Callable[..., DictConfig], steps: int = 6, rounds: int = 2) -> list[UnlearnRun]:
    """Measure each recipe of RECIPES; `compose(*overrides)` gives the composed config."""
    best: dict[str, UnlearnRun] = {}
    for _ in range(rounds):
        for recipe in RECIPES:
            cfg = compose("task=unlearn", f"unlearn={recipe}", f"unlearn.train.steps={steps + 1}",
                          "unlearn.train.early_stop=false")
            run = _one_run(cfg, recipe, steps)
            if recipe not in best or run.seconds_per_step < best[recipe].seconds_per_step:
                best[recipe] = run
    return [best[r] for r in RECIPES]


def _one_run(cfg: DictConfig, recipe: str, steps: int) -> UnlearnRun:
    u = cfg.unlearn
    worker = get_worker()
    worker.configure(cfg)
    adapter, _ = worker.model(cfg.model, cfg.device)
    method = build_method(u)
    data = build_data(u.data, seed=int(cfg.seed))
    sizes = model_sizes(adapter, 0)
    with (
        trained_in_place(worker, adapter, u.train, method) as trainable,
        tempfile.TemporaryDirectory(prefix="vlmsafety-bench-unlearn-") as tmp,
    ):
        result = train(trainable, method, data, u.train, Path(tmp), lambda spec: worker.image(spec)[0], int(cfg.seed))
        rows = [json.loads(line) for line in (Path(tmp) / TRAIN_LOG).read_text().splitlines()]
    timed = rows[1:]  # step 1 is the warm-up
    seconds = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, timed, strict=False)]
    meter, n = result.meter, result.steps
    flops = estimate_flops(replace(sizes, trainable=trainable.n_trainable), meter, trainable.mode)
    return UnlearnRun(
        recipe=recipe, batch_size=int(u.train.batch_size), steps=len(timed), seconds_per_step=statistics.median(seconds),
        tokens_per_step=sum(meter.tokens.values()) / n, images_per_step=meter.images / n,
        vision_tokens_per_step=sum(meter.vision_tokens.values()) / n, flops_per_step=flops["total"] / n,
    )


def main() -> None:
    from benchmarks.__main__ import default_config
    from vlmsafety.ui import console

    runs = step_costs(default_config)
    base = runs[0]
    for r in runs:
        console.print(
            f"{r.recipe}: {r.seconds_per_step * 1000:.0f} ms/step (×{r.seconds_per_step / base.seconds_per_step:.2f}), "
            f"{r.tokens_per_step:.0f} tokens/step, {r.images_per_step:.0f} images/step, "
            f"{r.flops_per_step:.3g} FLOPs/step (×{r.flops_per_step / base.flops_per_step:.2f})"
        )


if __name__ == "__main__":
    main()
