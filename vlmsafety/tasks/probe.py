"""task=probe: how far each vision layer's features move the language model along its refusal direction.

No generation and no judge (docs/probe.md): one forward pass per prompt per vision layer, keeping the
LM's residual stream at the last prompt token after every LM block and the first answer token's
logits (`FamilyAdapter.prompt_states`). The refusal direction (Arditi et al., NeurIPS 2024) comes
from a calibration split the per-layer scores never see: by default the attack set's text-only
prompts, which no vision layer can change. The maths is in `vlmsafety/refusal_direction.py`; the
tables, files and plot in `vlmsafety/probe_report.py`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from vlmsafety import environment
from vlmsafety import refusal_direction as rd
from vlmsafety.attacks import AttackItem, load_attack_set
from vlmsafety.errors import VlmSafetyError
from vlmsafety.judges.keyword import GCG_TEST_PREFIXES
from vlmsafety.layers import resolve_layer
from vlmsafety.models.base import FamilyAdapter
from vlmsafety.probe_report import Groups, LayerResult, write_outputs
from vlmsafety.tasks import register_task
from vlmsafety.ui import progress
from vlmsafety.worker import Worker, get_worker

log = logging.getLogger(__name__)

DIRECTION_FROM = ("text", "default_layer")


@dataclass
class Split:
    """Which prompts the direction is computed on, and which are scored at every vision layer (disjoint)."""

    calibration: list[AttackItem]
    evaluation: list[AttackItem]
    how: str  # one line saying where the calibration prompts come from


def split_prompts(items: list[AttackItem], direction_from: str, seed: int) -> Split:
    """Calibration and evaluation prompts; evaluation = prompts with an image, which the vision layer changes.

    `text`: calibration = the set's text-only prompts; a set with no harmful or no benign text-only prompt
    gets them from its image prompts' requests in words (`behavior`, the image dropped), as
    `attack=builtin_text` does for `attack=builtin`. `default_layer`: a seeded half of each category's
    image prompts calibrates (at the model's trained layer), the other half is evaluated.
    """
    if direction_from not in DIRECTION_FROM:
        raise VlmSafetyError(f"probe.direction_from={direction_from!r}; valid: {', '.join(DIRECTION_FROM)}")
    with_image = [it for it in items if it.image is not None]
    if not with_image:
        raise VlmSafetyError("task=probe scores image+text prompts at every vision layer, but this attack set has none; "
                             "pick one with images (e.g. attack=organism or attack=builtin)")
    if direction_from == "default_layer":
        rng = np.random.default_rng(seed)
        calibration, evaluation = [], []
        for category in dict.fromkeys(it.category for it in with_image):
            group = [it for it in with_image if it.category == category]
            chosen = set(rng.permutation(len(group))[: len(group) // 2].tolist())
            calibration += [it for k, it in enumerate(group) if k in chosen]
            evaluation += [it for k, it in enumerate(group) if k not in chosen]
        return Split(calibration, evaluation, "a seeded half of each category's image prompts, at the default layer")
    text = [it for it in items if it.image is None]
    if any(it.harmful for it in text) and any(not it.harmful for it in text):
        return Split(text, with_image, "the set's text-only prompts")
    derived = [
        replace(it, id=f"{it.id}#text", text=it.behavior or it.text, image=None, category=f"{it.category}_text")
        for it in with_image
    ]
    return Split(derived, with_image, "the image prompts' requests in words (behavior), without their images")


def first_answer_tokens(adapter: FamilyAdapter, strings: list[str], example: AttackItem) -> dict[str, int]:
    """Per string, the token the model emits first when it answers with it (unknown tokens left out).

    Tokenised as teacher forcing sees it: the rendered prompt followed by the chat template's
    assistant turn, so a template's trailing space or newline is accounted for.
    """
    tokenizer = getattr(adapter.processor, "tokenizer", adapter.processor)
    has_image = example.image is not None
    prompt = adapter.render(example.text, has_image)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out: dict[str, int] = {}
    for s in strings:
        ids = tokenizer(prompt + adapter.render_answer(example.text, has_image, s), add_special_tokens=False)["input_ids"]
        if ids[: len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids):
            raise VlmSafetyError(f"{adapter.name}: the answer {s!r} merges with the prompt's last token when tokenised, "
                                 "so it has no first answer token; drop it from probe.refusal_prefixes")
        token = ids[len(prompt_ids)]
        if token != tokenizer.unk_token_id:
            out[s] = int(token)
    return out


def refusal_strings(cfg: DictConfig) -> list[str]:
    """probe.refusal_prefixes, or the keyword judge's GCG strings that open a sentence (capitalised)."""
    given = cfg.probe.get("refusal_prefixes")
    if given is None:
        return [s for s in GCG_TEST_PREFIXES if s[:1].isupper()]
    if isinstance(given, str) or not isinstance(given, (list, tuple, ListConfig)) or not given:
        raise VlmSafetyError(f"probe.refusal_prefixes={given!r} must be a non-empty list of strings, or null")
    return [str(s) for s in given]


def forward_states(
    worker: Worker, adapter: FamilyAdapter, items: list[AttackItem], layer: int, batch_size: int,
    bar: Any = None, task: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass per item at vision `layer`: residual streams [n, LM blocks + 1, D] and logits [n, vocab]."""
    hidden, logits = [], []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        rendered, encoded = worker.encode_batch(adapter, [it.image for it in batch])
        prompts = [adapter.render(it.text, it.image is not None) for it in batch]
        states = adapter.prompt_states(prompts, [r[0] if r else None for r in rendered], encoded, layer)
        hidden.append(states.hidden.numpy())
        logits.append(states.logits.numpy())
        if bar is not None:
            bar.advance(task)
    return np.concatenate(hidden), np.concatenate(logits)


def choose_lm_layer(
    projections: np.ndarray, harmful: np.ndarray, requested: int | None, lowest: int = 0
) -> tuple[int, list[float]]:
    """The headline LM layer: `requested`, else the one from `lowest` on whose calibration projections separate best.

    projections: [n, L+1] on the calibration prompts; harmful: [n] bool; lowest: the first LM layer that
    can see the image (`FamilyAdapter.first_image_lm_layer`). Returns it and every layer's separation
    (standardised mean difference, `refusal_direction.separation`).
    """
    seps = [rd.separation(projections[harmful, k], projections[~harmful, k]) for k in range(projections.shape[1])]
    if requested is None:
        return lowest + int(np.argmax(seps[lowest:])), seps
    if not 0 <= requested < projections.shape[1]:
        raise VlmSafetyError(f"probe.lm_layer={requested} is out of range: valid LM layers are 0..{projections.shape[1] - 1} "
                             "(0 = the first block's input, k = block k's output), or null to choose")
    return requested, seps


def vision_layers(cfg: DictConfig, adapter: FamilyAdapter) -> list[int]:
    """`layers=[...]` resolved to absolute depths, or every layer 0..N."""
    if cfg.get("layer") is not None:
        raise VlmSafetyError(f"task=probe scores every vision layer; layer={cfg.layer} is not used: "
                             "pick some with layers='[0,12,23]' instead")
    if cfg.get("layers") is None:
        return list(range(adapter.num_layers + 1))
    if not isinstance(cfg.layers, ListConfig) or not len(cfg.layers):
        raise VlmSafetyError(f"layers={cfg.layers!r} must be a non-empty list, e.g. layers='[0,12,23]' (quote it in a shell)")
    resolved = [resolve_layer(v, adapter.num_layers, adapter.default_layer, cfg.model.name) for v in cfg.layers]
    return sorted(set(resolved))


@register_task("probe")
def run_probe(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    pc = cfg.probe
    folds = int(pc.folds)
    if folds < 2:
        raise VlmSafetyError(f"probe.folds={folds}: cross-validation needs at least 2 folds")
    attack_set = load_attack_set(cfg.attack, limit=cfg.limit, seed=cfg.seed)
    split = split_prompts(attack_set.items, str(pc.direction_from), int(cfg.seed))
    strings = refusal_strings(cfg)
    worker = get_worker()
    worker.configure(cfg)
    adapter, _ = worker.model(cfg.model, cfg.device)
    layers = vision_layers(cfg, adapter)
    batch_size = max(1, int(cfg.batch_size))
    tokens = first_answer_tokens(adapter, strings, split.evaluation[0])
    if not tokens:
        raise VlmSafetyError(f"{cfg.model.name}: no refusal string has a known first token; set probe.refusal_prefixes")
    cal_harmful = np.array([it.harmful for it in split.calibration])
    if cal_harmful.all() or not cal_harmful.any():
        raise VlmSafetyError(f"the calibration prompts ({split.how}) need harmful and benign ones; "
                             f"this set gives {int(cal_harmful.sum())} harmful of {len(cal_harmful)}")
    log.info("%s · attack %s · direction from %s (%d harmful, %d benign) · %d image prompts × %d vision layers · %s",
             cfg.model.name, cfg.attack.name, split.how, int(cal_harmful.sum()), int((~cal_harmful).sum()),
             len(split.evaluation), len(layers), environment.device_description(adapter.device))
    log.info("refusal score = probability of the first answer token being one of %s",
             sorted({adapter.processor.tokenizer.convert_ids_to_tokens(t) for t in tokens.values()}
                    if hasattr(adapter.processor, "tokenizer") else set(tokens.values())))

    groups = Groups.of(split.evaluation, [str(c) for c in (pc.get("apart") or [])])
    probe_rows = groups.headline | groups.benign  # the linear probe tells headline harmful from benign prompts
    n_batches = -(-len(split.calibration) // batch_size) + len(layers) * -(-len(split.evaluation) // batch_size)
    results: list[LayerResult] = []
    with progress() as bar:
        task = bar.add_task("probing", total=n_batches)
        # calibration runs at the default layer (text-only prompts do not depend on the vision layer at all)
        cal_states, _ = forward_states(worker, adapter, split.calibration, adapter.default_layer, batch_size, bar, task)
        direction = rd.difference_of_means(cal_states[cal_harmful], cal_states[~cal_harmful])  # [L+1, D]
        cal_proj = rd.project(cal_states, direction)  # [n_cal, L+1]
        lm_layer, seps = choose_lm_layer(
            cal_proj, cal_harmful, None if pc.lm_layer is None else int(pc.lm_layer), adapter.first_image_lm_layer()
        )
        scale = (cal_proj[cal_harmful].mean(axis=0), cal_proj[~cal_harmful].mean(axis=0))
        for layer in layers:
            bar.update(task, description=f"probing vision layer {layer}")
            states, logits = forward_states(worker, adapter, split.evaluation, layer, batch_size, bar, task)
            accuracy = [  # per LM layer; the states are dropped after this layer (a real model's are large)
                rd.probe_accuracy(states[probe_rows, k], groups.headline[probe_rows], folds, int(cfg.seed))
                for k in range(states.shape[1])
            ]
            results.append(LayerResult(
                layer=layer, projections=rd.project(states, direction), refusal=rd.token_mass(logits, list(tokens.values())),
                probe_accuracy=accuracy,
            ))
    log.info("LM layer %d of 0..%d (%s); calibration separation there %.2f",
             lm_layer, cal_proj.shape[1] - 1, "probe.lm_layer" if pc.lm_layer is not None else "best separation", seps[lm_layer])
    if lm_layer < adapter.first_image_lm_layer():
        log.warning("LM layer %d comes before the image can reach the last prompt token (layer %d): its curve is flat",
                    lm_layer, adapter.first_image_lm_layer())
    facts = {
        "task": "probe", "model": cfg.model.name, "family": cfg.model.family, "attack": cfg.attack.name,
        "attack_source": attack_set.source, "default_layer": adapter.default_layer, "num_layers": adapter.num_layers,
        "vision_layers": layers, "lm_layer": lm_layer, "lm_layer_chosen": pc.lm_layer is None,
        "first_image_lm_layer": adapter.first_image_lm_layer(),
        "direction_from": str(pc.direction_from), "calibration": split.how,
        "calibration_separation": [s if np.isfinite(s) else str(s) for s in seps],  # "inf": no spread "direction_norm": np.linalg.norm(direction, axis=-1).tolist(),
        "calibration_ids": [it.id for it in split.calibration], "evaluation_ids": [it.id for it in split.evaluation],
        "refusal_tokens": tokens, "seed": int(cfg.seed), "folds": folds,
        "versions": environment.versions(), "git_commit": environment.git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    facts["timings_s"] = {"total": round(time.perf_counter() - started, 3)}
    paths = write_outputs(out_dir, cfg, groups, results, scale, facts, split.evaluation)
    return {**facts, "paths": {k: str(v) for k, v in paths.items()}}
