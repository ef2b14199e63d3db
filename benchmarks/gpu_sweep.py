"""GPU benchmark without a download: a 25-layer sweep of a LLaVA-1.5-7B-shaped model with random weights.

The model is `LlavaForConditionalGeneration` built from vlmsafety/models/configs/llava15_7b.json (the
published architecture: CLIP ViT-L/14-336, 24 blocks, 576 image tokens, Vicuna-7B-shaped Llama), so a
step costs what the real checkpoint's step costs; its weights are random, so its answers are noise and
rarely end early: nearly every row decodes all its new tokens. The tokenizer is the project's locally
trained one (as for tiny_llava), whose ids fit the 7B vocabulary.

Measured: every layer 0..24 for `--prompts` image prompts (the builtin attack set's requests and
pictures, cycled; 520 = AdvBench's size) × `--new-tokens`, greedy, through the project's adapter calls,
- per-layer: each layer's batches of `--batch-size` prompts decoded on their own (what a sweep did before);
- layer-batched: each batch decoded for many layers in one generate call, as many as the project's budget
  allows (vlmsafety/layer_budget.py: half the GPU memory free after loading),
in bf16 and 4-bit (bitsandbytes NF4, loaded through the project's own `load_adapter`). Each variant runs
until `--budget-s` seconds and is extrapolated from the share of rows it decoded (the figures say so).
Rows decoded by both variants are compared: how many answers differ between batched and alone.

`python -m benchmarks.gpu_sweep` skips (exit 0) without CUDA; `--tiny` runs the same code on a shrunken
config on the CPU (the test suite does, so that this file is not dead code). With CUDA it writes its
figures into docs/PERFORMANCE.md (`--out`); `make bench` calls it when CUDA is present.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "vlmsafety" / "models" / "configs" / "llava15_7b.json"
BEGIN, END = "<!-- gpu_sweep:begin -->", "<!-- gpu_sweep:end -->"
NOT_RUN = "Not yet run on a GPU: `python -m benchmarks.gpu_sweep` (or `make bench` on a CUDA machine) fills this section."


@dataclass
class SweepRun:
    """One variant (quant × decoding) of the sweep: what was decoded in the time budget, and the extrapolation."""

    quant: str
    mode: str  # "per-layer" or "layer-batched"
    rows_total: int  # layers × prompts
    rows_done: int
    new_tokens: int  # tokens the decoded rows generated (to their end-of-sequence)
    seconds: float
    peak_mem_gib: float | None
    model_mem_gib: float
    rows_per_call: int  # the largest generate call's rows

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0

    @property
    def sweep_s(self) -> float:
        """The whole sweep's decoding time, extrapolated from the rows decoded."""
        return self.seconds * self.rows_total / max(1, self.rows_done)


def llava_config(tiny: bool, tokenizer: Any) -> Any:
    """The 7B config (or, `tiny`, the same structure shrunk), with the local tokenizer's special ids."""
    from vlmsafety.models.facts import parse_config

    raw = json.loads(CONFIG.read_text())
    if tiny:
        raw["text_config"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=4)
        raw["vision_config"].update(hidden_size=32, intermediate_size=64, num_attention_heads=2, image_size=56,
                                    projection_dim=32)
        raw["image_seq_length"] = (56 // 14) ** 2
    config = parse_config(raw)
    config.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    config.text_config.pad_token_id = tokenizer.pad_token_id
    config.text_config.bos_token_id = tokenizer.bos_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    return config


def build(tiny: bool, device: Any, folder: Path) -> Any:
    """Random-weight LLaVA-1.5-7B-shaped adapter on `device` (bf16 on CUDA), also saved to `folder` for 4-bit loading."""
    import torch
    from transformers import LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.utils import logging as hf_logging

    from vlmsafety.models.builtin.tiny_llava import CHAT_TEMPLATE
    from vlmsafety.models.builtin.tokenizer import to_transformers, train_bpe_tokenizer
    from vlmsafety.models.llava import LlavaAdapter

    hf_logging.disable_progress_bar()
    tok = train_bpe_tokenizer([], vocab_size=512, bos="<s>", eos="</s>", pad="<pad>", extra_special=["<image>"])
    tokenizer = to_transformers(tok, bos="<s>", eos="</s>", pad="<pad>", extra_special_tokens={"image_token": "<image>"})
    config = llava_config(tiny, tokenizer)
    size = config.vision_config.image_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer, patch_size=config.vision_config.patch_size, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype).eval()
    for key in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return LlavaAdapter(model, processor, name="llava15_7b_random")


def load_4bit(folder: Path, device: Any) -> Any:
    """The saved random model through the project's own loader with `quant: 4bit` (vision tower and projector kept)."""
    from omegaconf import OmegaConf

    from vlmsafety.models.loading import load_adapter

    spec = OmegaConf.create({"name": "llava15_7b_random_4bit", "family": "llava", "path": str(folder), "quant": "4bit",
                             "dtype": "auto"})
    return load_adapter(spec, device)


def workload(adapter: Any, n_prompts: int) -> tuple[list[str], list[Any], list[Any]]:
    """`n_prompts` rendered image prompts (builtin requests and pictures, cycled), their images and encoder entries."""
    from omegaconf import OmegaConf

    from vlmsafety.attacks import load_attack_set
    from vlmsafety.worker import Worker

    attack = OmegaConf.load(REPO / "conf" / "attack" / "builtin.yaml")
    items = [it for it in load_attack_set(attack, limit=None, seed=0).items if it.image is not None]
    worker = Worker()
    chosen = list(itertools.islice(itertools.cycle(items), n_prompts))
    rendered = [worker.image(it.image) for it in chosen]
    encoded = worker.encode(adapter, [r[0] for r in rendered], [r[1] for r in rendered])
    return [adapter.render(it.text, True) for it in chosen], [r[0] for r in rendered], encoded


def run_sweep(adapter: Any, quant: str, batched: bool, data: tuple, layers: list[int], batch_size: int,
              new_tokens: int, budget_s: float) -> tuple[SweepRun, dict[tuple[int, int], str]]:
    """Decode the sweep (per-layer or layer-batched) until `budget_s`; also return answers by (layer, prompt)."""
    import torch

    from vlmsafety import environment, layer_batching
    from vlmsafety.layer_budget import layers_per_batch
    from vlmsafety.models.base import GenerationSettings

    prompts, images, encoded = data
    settings = GenerationSettings(max_new_tokens=new_tokens)
    batches = [list(range(k, min(k + batch_size, len(prompts)))) for k in range(0, len(prompts), batch_size)]
    if batched:
        def units():
            for b in batches:
                length = adapter.model_inputs([prompts[i] for i in b], [images[i] for i in b])["input_ids"].shape[1]
                k = layers_per_batch(adapter, layer_batching.Settings(), len(b), length + new_tokens)
                for chunk in layer_batching.chunks(layers, layers[0], k):
                    yield b, chunk
    else:
        def units():
            for layer in layers:
                for b in batches:
                    yield b, [layer]
    device = adapter.device
    environment.reset_peak_memory(device)
    answers: dict[tuple[int, int], str] = {}
    rows = tokens = widest = 0
    started = time.perf_counter()
    for b, chunk in units():
        outs = adapter.generate([prompts[i] for i in b] * len(chunk), [images[i] for i in b] * len(chunk),
                                [encoded[i] for i in b] * len(chunk), [v for v in chunk for _ in b], settings)
        for j, out in enumerate(outs):
            answers[(chunk[j // len(b)], b[j % len(b)])] = out.text
        rows, tokens, widest = rows + len(outs), tokens + sum(o.n_new_tokens for o in outs), max(widest, len(outs))
        if time.perf_counter() - started > budget_s:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    peak = environment.peak_memory(device)["peak_mem_bytes"] / 2**30 if device.type == "cuda" else None
    run = SweepRun(quant, "layer-batched" if batched else "per-layer", len(layers) * len(prompts), rows, tokens, seconds,
                   peak, adapter.model.get_memory_footprint() / 2**30, widest)
    return run, answers


def markdown(runs: list[SweepRun], differ: dict[str, tuple[int, int]], facts: dict[str, Any]) -> str:
    """The GPU section of docs/PERFORMANCE.md."""
    lines = [
        f"Measured on {facts['device']} ({facts['date']}, torch {facts['torch']}, transformers {facts['transformers']}): "
        f"{facts['layers']} layers × {facts['prompts']} image prompts × {facts['new_tokens']} new tokens, batch_size "
        f"{facts['batch_size']}, greedy, `{facts['model']}` with random weights; each variant ran for up to "
        f"{facts['budget_s']:.0f} s and the sweep time is extrapolated from the rows it decoded.",
        "",
        "| quant | decoding | rows decoded | rows per call | new tokens/s | sweep decoding (s, extrapolated) | peak GPU memory (GiB) | model (GiB) | vs per-layer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r.quant, r.mode): r for r in runs}
    for r in runs:
        base = by.get((r.quant, "per-layer"))
        ratio = f"{base.sweep_s / r.sweep_s:.1f}×" if base else ""
        peak = "n/a" if r.peak_mem_gib is None else f"{r.peak_mem_gib:.1f}"
        lines.append(f"| {r.quant} | {r.mode} | {r.rows_done} of {r.rows_total} | {r.rows_per_call} | {r.tokens_per_s:.0f} | "
                     f"{r.sweep_s:.0f} | {peak} | {r.model_mem_gib:.1f} | {ratio} |")
    lines.append("")
    for quant, (n_diff, n_both) in differ.items():
        lines.append(f"- {quant}: of the {n_both} answers decoded both alone and layer-batched, {n_diff} differ.")
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Put `body` between the gpu_sweep markers of `path` (kept by `make bench`, which rewrites the rest)."""
    from vlmsafety.records import write_text_atomic

    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + f"\n\n## GPU: 25-layer sweep of a LLaVA-1.5-7B-shaped model\n{block}\n"
    write_text_atomic(path, text)


def section(path: Path) -> str:
    """The GPU section's body as last written into `path`, or the not-yet-run line."""
    text = path.read_text() if path.exists() else ""
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, flags=re.S)
    return m.group(1) if m else NOT_RUN


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a shrunken config on the CPU (checks the code path; no figures written)")
    ap.add_argument("--prompts", type=int, default=None, help="image prompts (default 520; --tiny: 6)")
    ap.add_argument("--new-tokens", type=int, default=None, help="new tokens per answer (default 128; --tiny: 4)")
    ap.add_argument("--layers", type=int, default=25, help="layers 0..N-1 to sweep (default 25 = every layer)")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts per per-layer batch (the records' batch_size)")
    ap.add_argument("--quant", default="bf16,4bit", help="comma-separated: bf16 (fp32 on the CPU), 4bit")
    ap.add_argument("--budget-s", type=float, default=None, help="seconds per variant before extrapolating (default 90)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "PERFORMANCE.md", help="where the figures go (CUDA runs only)")
    args = ap.parse_args(argv)

    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_sweep: skipped, no CUDA device (use --tiny to run the code path on the CPU)")
        return 0
    device = torch.device("cpu" if args.tiny else "cuda")
    prompts = args.prompts or (6 if args.tiny else 520)
    new_tokens = args.new_tokens or (4 if args.tiny else 128)
    budget_s = args.budget_s if args.budget_s is not None else (60.0 if args.tiny else 90.0)
    layers = list(range(args.layers))
    runs: list[SweepRun] = []
    differ: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="vlmsafety-gpu-sweep-") as tmp:
        adapter = build(args.tiny, device, Path(tmp))
        # bf16 first: it decodes the model as built; 4-bit then replaces it
        for quant in sorted({q.strip() for q in args.quant.split(",") if q.strip()}, key=lambda q: q != "bf16"):
            if quant == "4bit":
                adapter = None  # free the bf16 weights first
                adapter = load_4bit(Path(tmp), device)
            elif device.type == "cpu":
                quant = "fp32"  # the CPU's unquantized dtype
            data = workload(adapter, prompts)
            alone, a = run_sweep(adapter, quant, False, data, layers, args.batch_size, new_tokens, budget_s)
            shared, b = run_sweep(adapter, quant, True, data, layers, args.batch_size, new_tokens, budget_s)
            both = a.keys() & b.keys()
            differ[quant] = (sum(a[k] != b[k] for k in both), len(both))
            runs += [alone, shared]
            print(json.dumps({**asdict(alone), "tokens_per_s": alone.tokens_per_s, "sweep_s": alone.sweep_s}))
            print(json.dumps({**asdict(shared), "tokens_per_s": shared.tokens_per_s, "sweep_s": shared.sweep_s}))
            print(json.dumps({"quant": quant, "differing_answers": differ[quant][0], "compared": differ[quant][1]}))
    if device.type == "cuda":
        from vlmsafety import environment

        facts = {
            "device": torch.cuda.get_device_name(device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "torch": torch.__version__, "transformers": environment.versions().get("transformers"), "layers": len(layers),
            "prompts": prompts, "new_tokens": new_tokens, "batch_size": args.batch_size, "budget_s": budget_s,
            "model": "llava15_7b",
        }
        write_section(args.out, markdown(runs, differ, facts))
        print(f"wrote the GPU section of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
