"""The benchmark results as terminal tables and as docs/PERFORMANCE.md (targets judged, misses explained)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from benchmarks.analysis import analysis
from benchmarks.generation import GenerationRun, WidthRun
from benchmarks.sweep_cost import PHASES, SweepRun
from benchmarks.unlearning import UnlearnRun
from vlmsafety.records import write_text_atomic
from vlmsafety.report_tables import compact_table

SWEEP_RATIO_TARGET = 10.0  # one-process sweep vs naive, wall time
OVERHEAD_TARGET = 0.25  # share of the one-process sweep's wall time not spent decoding
BATCH_TARGET = 6.0  # tokens/s at batch 16 vs batch 1
# issue 16: a layer-batched 25-layer sweep vs one process per layer, and vs one single-layer run (wall)
LAYER_SWEEP_TARGET = 15.0
SINGLE_RUN_MULTIPLE = 2.5
STARTUP_TARGET_S = 1.5  # `run.py --help` and a config error


@dataclass
class Results:
    machine: dict[str, Any]
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None
    model: str
    attack: str
    max_new_tokens: int
    batch_size: int
    threads: int  # torch CPU threads of the workload (the config's, else the model's cpu_threads)
    n_layers: int
    import_s: float
    teardown_s: float  # what a full interpreter teardown would add per process (run.py skips it)
    naive: SweepRun
    multirun: SweepRun
    layers_job: SweepRun
    generation: list[GenerationRun]
    spin: dict[str, list[dict]]
    unlearning: list[UnlearnRun]
    bench_s: float
    multirun_alone: SweepRun | None = None  # `-m layer=...` with layer_batching.enabled=false
    startup: dict[str, float] | None = None  # sweep_cost.STARTUP_COMMANDS: best wall seconds each
    torch_free: dict[str, bool] | None = None  # command -> whether it avoided importing torch
    gpu_section: str = ""  # the GPU benchmark's section (benchmarks/gpu_sweep.py), as last written
    widths: list[WidthRun] | None = None  # generation.wide_vs_narrow: one call per layer vs one call of all layers

    def ratio(self, run: SweepRun) -> float:
        return self.naive.wall_s / run.wall_s

    @property
    def one_process(self) -> list[SweepRun]:
        return [self.multirun, *([self.multirun_alone] if self.multirun_alone else []), self.layers_job]

    @property
    def single_run_s(self) -> float:
        """One single-layer `python run.py`: the naive sweep's mean process."""
        return self.naive.wall_s / self.n_layers

    def speedup(self, batch_size: int) -> float:
        by = {g.batch_size: g.tokens_per_s for g in self.generation}
        return by[batch_size] / by[1]


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def sweep_rows(r: Results) -> list[list[str]]:
    rows = []
    for run in (r.naive, *r.one_process):
        extrapolated = f" (measured {run.measured}, extrapolated)" if run.measured else ""
        rows.append([
            run.name + extrapolated, str(run.processes), f"{run.wall_s:.1f}", f"{run.decode_s:.1f}", f"{100 * run.overhead_share:.0f} %",
            "1.0×" if run is r.naive else f"{r.ratio(run):.1f}×",
        ])
    return rows


SWEEP_HEADER = ["how", "processes", "wall (s)", "LLM decoding (s)", "overhead share", "speed-up vs naive"]
GEN_HEADER = ["batch size", "prompts", "new tokens", "seconds", "tokens/s", "vs batch 1"]


def gen_rows(r: Results) -> list[list[str]]:
    return [
        [str(g.batch_size), str(g.prompts), str(g.new_tokens), f"{g.seconds:.2f}", f"{g.tokens_per_s:.0f}", f"{r.speedup(g.batch_size):.1f}×"]
        for g in r.generation
    ]


CONSOLE_SKIP = {"timed steps", "vision patches / step"}  # columns left out of the terminal tables (80 wide)
UNLEARN_HEADER = ["recipe", "batch", "timed steps", "s / step", "LM tokens / step", "images / step",
                  "vision patches / step", "est. FLOPs / step", "time × textual", "FLOPs × textual"]


def unlearn_rows(r: Results) -> list[list[str]]:
    base = r.unlearning[0]
    return [
        [u.recipe, str(u.batch_size), str(u.steps), f"{u.seconds_per_step:.3f}", f"{u.tokens_per_step:.0f}",
         f"{u.images_per_step:.0f}", f"{u.vision_tokens_per_step:.0f}", f"{u.flops_per_step:.3g}",
         f"{u.seconds_per_step / base.seconds_per_step:.2f}×", f"{u.flops_per_step / base.flops_per_step:.2f}×"]
        for u in r.unlearning
    ]


def breakdown_rows(r: Results) -> list[list[str]]:
    """Where each one-process sweep's wall time went (s): outside jobs, then each phase inside them."""
    rows = []
    for run in r.one_process:
        inside = run.phases.get("total", 0.0)
        other = inside - sum(run.phases.get(p, 0.0) for p in PHASES)
        rows.append([
            run.name, f"{run.wall_s:.1f}", f"{r.import_s:.1f}", f"{run.outside_jobs(r.import_s):.1f}",
            *(f"{run.phases.get(p, 0.0):.2f}" for p in PHASES), f"{other:.2f}",
        ])
    return rows


BREAKDOWN_HEADER = [
    "how", "wall", "start-up (imports, exit)", "Hydra, summary, rest outside jobs", "model load", "judge/scorer load",
    "image render + encode", "LLM decoding", "judging", "toxicity", "bookkeeping + writes",
]


def console_tables(r: Results) -> list[Table]:
    tables = []
    for title, header, rows in (
        (f"Sweep cost: {r.n_layers} layers of {r.model}", SWEEP_HEADER, sweep_rows(r)),
        (f"Generation on {r.model} (max_new_tokens {r.max_new_tokens})", GEN_HEADER, gen_rows(r)),
        (f"Unlearning steps on {r.model}", UNLEARN_HEADER, unlearn_rows(r)),
    ):
        keep = [i for i, h in enumerate(header) if h not in CONSOLE_SKIP]  # docs/PERFORMANCE.md has every column
        t = compact_table(title)
        for i in keep:
            h = header[i]
            t.add_column("\n".join(textwrap.wrap(h, 8, break_long_words=False)), justify="left" if h in ("how", "recipe") else "right",
                         no_wrap=h != "how")
        for row in rows:
            t.add_row(*(row[i] for i in keep))
        tables.append(t)
    targets = compact_table("Targets")
    for h in ("target", "measured", ""):
        targets.add_column(h)
    for row in target_rows(r) + issue16_rows(r):
        targets.add_row(*row)
    tables.append(targets)
    return tables


def target_rows(r: Results) -> list[list[str]]:
    best = max(r.one_process, key=lambda run: r.ratio(run))
    rows = [
        [f"one-process sweep ≥ {SWEEP_RATIO_TARGET:.0f}× faster than naive",
         " / ".join(f"{r.ratio(run):.1f}×" for run in r.one_process), _mark(r.ratio(best) >= SWEEP_RATIO_TARGET)],
        [f"its overhead ≤ {100 * OVERHEAD_TARGET:.0f} % of wall",
         " / ".join(f"{100 * run.overhead_share:.0f} %" for run in r.one_process),
         _mark(min(run.overhead_share for run in r.one_process) <= OVERHEAD_TARGET)],
        [f"batch-16 ≥ {BATCH_TARGET:.0f}× the tokens/s of batch 1", f"{r.speedup(16):.1f}×", _mark(r.speedup(16) >= BATCH_TARGET)],
    ]
    return rows


def issue16_rows(r: Results) -> list[list[str]]:
    """Targets of layer-batched decoding and start-up (empty when this run did not measure them)."""
    rows = []
    if r.multirun_alone is not None:
        ratio, multiple = r.ratio(r.multirun), r.multirun.wall_s / r.single_run_s
        rows += [
            [f"`-m layer=...` ≥ {LAYER_SWEEP_TARGET:.0f}× faster than naive", f"{ratio:.1f}×", _mark(ratio >= LAYER_SWEEP_TARGET)],
            [f"`-m layer=...` ≤ {SINGLE_RUN_MULTIPLE}× one single-layer run", f"{multiple:.1f}× ({r.multirun.wall_s:.1f} s vs "
             f"{r.single_run_s:.1f} s)", _mark(multiple <= SINGLE_RUN_MULTIPLE)],
        ]
    for name, seconds in (r.startup or {}).items():
        if name.startswith("run.py --help") or name.startswith("config error"):
            rows.append([f"{name} < {STARTUP_TARGET_S} s", f"{seconds:.2f} s", _mark(seconds < STARTUP_TARGET_S)])
    return rows


def startup_rows(r: Results) -> list[list[str]]:
    free = r.torch_free or {}
    return [[name, f"{s:.2f}", {True: "no", False: "yes"}.get(free.get(name), "")] for name, s in (r.startup or {}).items()]


LAYER_BATCHING_DESIGN = """**How layers share batches.** Across the layers of a sweep the language model, the prompts and the
decoding are the same; only the features that fill the image tokens differ, and every family's
`generate` takes a layer per row. A job's records are made of per-layer batches of `batch_size` prompts
(their padding is part of the computation); a shared generate call repeats one such batch once per
layer, so each row keeps exactly the input ids, padding, attention mask and position ids (Qwen's 3-D
rope positions are computed per row) it has when its layer is decoded alone, and only its image
features differ. Mllama's global vision blocks run once per layer over that layer's rows, the same rows
as alone. On this CPU a row's greedy answer is bit-identical either way: the tests compare every family
(organism, tiny_llava, tiny_llava_next, tiny_mllama, tiny_qwen25_vl) byte for byte, and 0 of 1600
organism rows differed in a 25-layer × 64-prompt shared call. On a GPU, cuBLAS may choose another
kernel for another batch size, so a bf16 row can differ in its last bits and, rarely, in a greedy
choice: `benchmarks/gpu_sweep.py` counts the differing answers; `layer_batching.enabled=false` turns
sharing off. Sampling (`do_sample=true`) never shares batches: a row's random draws would depend on its
batch-mates.

Which layers share: the **plan**, i.e. the jobs of this process that differ only in `layer`
(`vlmsafety/layer_batching.py`). `layers=[...]` plans its own layers; `python run.py -m layer=...` is
planned by the project's launcher (`hydra/launcher=vlmsafety`, the default: Hydra's basic launcher that
takes each job's config as Hydra's sweeper composed it to validate the batch, hands the list to the plan,
then runs every job through Hydra's own `run_job`). Hydra composes every job's config from scratch; the
launcher lets the compositions of one command share the parsed config files, each composition getting a
copy of them (`hydra_plugins/vlmsafety_launcher/shared_parses.py`; tests compare every job's config with
Hydra's own): composing a 25-layer sweep's configs took 2.3 s before, 1.6 s after (measured once, when
it was added, not by `make bench`). And a job whose overrides differ from a composed job's only in
`layer=VALUE` takes that job's config with the value, its override line and `hydra.job.override_dirname`
set as Hydra sets them (`layer_siblings.py`; tests compare these too): the 25-layer sweep composes one
job, and its composition share of a py-spy profile fell from 11 % to 3 %. The first job of a group decodes each of its image batches for every layer whose job is not
complete yet, appends its own rows to its `generations.jsonl` as before, and leaves the other layers'
answers with the worker; each later job takes its answers from there. Every job still writes its own
folder, key, `metrics.json` (`shared_layer_records`, `tokens_for_other_layers`) and summary row; a kill
loses only answers held in memory (the rerun decodes them again, byte-identical), a failing job fails
alone. submitit runs each job in its own process, so there only `layers=[...]` shares batches.

**Budget.** How many layers' copies of a batch go into one call (`vlmsafety/layer_budget.py`): as many
as keep the rows' KV cache plus logits (`FamilyAdapter.row_memory_bytes`: 2 × layers × KV heads ×
head size × dtype bytes per token of the padded prompt and the new tokens; Mllama adds each row's
cross-attention states) under `layer_batching.memory_gb`, by default half the GPU memory free after the
model loaded (2 GiB on a CPU), and the rows under `layer_batching.max_rows`, by default no cap on CUDA
and 64 on a CPU. On a GPU decoding is memory-bound, so the wider call is close to free. On this CPU wider
calls do not pay (the tables below, measured in each run): a wide call runs fewer steps, so it saves
per-step Python and dispatch work, but the same rows' arithmetic and memory traffic remain, and its
KV cache growth (`torch.cat` copies every row's cache at each step), attention and element-wise work
run on tensors that outgrow the CPU's caches (25 layers' copies of 64 organism prompts: 1600 rows).
Hence the CPU cap.

**Dropping finished rows.** transformers' `generate` keeps a row that has said its end-of-sequence token
in every step until the longest row of its batch ends. The LLaVA family (the organism, LLaVA-1.5,
LLaVA-NeXT) decodes greedy answers with `vlmsafety/models/decoding.py` instead: transformers' own
forward passes and input preparation (position ids from the attention mask, a `DynamicCache`,
`logits_to_keep=1`, the image features in the first step only), the argmax of each step's float32
logits; rows that have ended leave the batch, their KV cache rows with them, once they are an eighth of
it (dropping copies the remaining rows' cache, so not at every row's end). The tests compare the
tokens with `generate`'s on the organism's attack prompts at several layers and in shared batches
(tests/test_decoding.py). A checkpoint whose generation config changes greedy steps (a repetition
penalty, a minimum length, suppressed tokens) keeps `generate`, and so does sampling. **Processing a
batch once.** A shared call repeats a batch once per layer; its processor outputs (tokenizing, image
preprocessing) are computed for one copy and repeated, and the adapter remembers the last batches, so
the per-layer calls of one batch process it once (`FamilyAdapter.model_inputs`)."""


def layer_batching_section(r: Results) -> str:
    """Section 4 of PERFORMANCE.md: how layers share batches, the same sweep with and without it, and start-up."""
    if r.multirun_alone is None:
        return f"\n## 4. Layer-batched decoding and start-up\n{LAYER_BATCHING_DESIGN}\n"
    shared, alone = r.multirun, r.multirun_alone
    return f"""
## 4. Layer-batched decoding and start-up
{LAYER_BATCHING_DESIGN}

The sweep of section 1 in one process, its layers' image batches decoded in shared generate calls (the
default) or each layer on its own (`layer_batching.enabled=false`); same records either way (tests).

| how | wall (s) | LLM decoding, all jobs (s) | vs naive | vs one single-layer run ({r.single_run_s:.1f} s) |
|---|---|---|---|---|
| {shared.name} | {shared.wall_s:.1f} | {shared.decode_s:.1f} | {r.ratio(shared):.1f}× | {shared.wall_s / r.single_run_s:.1f}× |
| {alone.name} | {alone.wall_s:.1f} | {alone.decode_s:.1f} | {r.ratio(alone):.1f}× | {alone.wall_s / r.single_run_s:.1f}× |

{width_block(r)}
Start-up, best of 3 (s), and whether the command imports torch:

{_md_table(["command", "wall (s)", "imports torch"], startup_rows(r))}

`task=inspect` still imports torch: it reads the checkpoint's config.json through transformers' own config
classes (`AutoConfig`), and importing them imports torch in transformers 5.x; its parameter counts come
from building the model on torch's meta device, so that they follow the real module tree
(`vlmsafety/models/facts.py`).
"""


WIDTH_HEADER = ["how", "rows per call", "calls", "wall (s)", "answers equal to one call per layer's"]


def width_block(r: Results) -> str:
    """Wide vs narrow generate calls (benchmarks/generation.py `wide_vs_narrow`): time and where it goes."""
    if not r.widths:
        return ""
    kinds = list(r.widths[0].ops)
    rows = [[w.how, str(w.rows_per_call), str(w.calls), f"{w.seconds:.2f}", f"{w.same_as_narrow}/{w.rows}"] for w in r.widths]
    ops = [[w.how, *(f"{w.ops[k]:.2f}" for k in kinds)] for w in r.widths]
    n = r.widths[0].rows_per_call
    return f"""Wide vs narrow calls on this CPU: {n} image prompts of `{r.model}` decoded at each of {r.n_layers} layers, one
generate call per layer (the CPU cap) or one call for all layers (what the budget gives a GPU); best of 2
passes, the two taking turns. Then one more pass each under torch's profiler: seconds of operator time
by kind (Python's own time is not in these; the profiler slows every operator alike).

{_md_table(WIDTH_HEADER, rows)}

{_md_table(["how", *kinds], ops)}

{_width_reading(r.widths)}
"""


def _width_reading(widths: list[WidthRun]) -> str:
    """One sentence from the figures: the wide call's time and each kind of operator time against the narrow calls'."""
    by = {w.rows_per_call: w for w in widths}
    narrow, wide = by[min(by)], by[max(by)]
    kinds = ", ".join(
        f"{kind.split(' (')[0]} {wide.ops[kind] / narrow.ops[kind]:.1f}×" for kind in narrow.ops if narrow.ops[kind] > 0
    )
    return (f"In this run the wide call took {wide.seconds / narrow.seconds:.2f}× the narrow calls' time; its operator "
            f"time against theirs, by kind: {kinds}.")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_markdown(r: Results, path: Path) -> None:
    m = r.machine
    v = m["versions"]
    load = lambda la: "n/a" if la is None else " / ".join(f"{x:.2f}" for x in la)  # noqa: E731
    text = f"""# Performance

Figures of the last `make bench` run (`python -m benchmarks`, code in `benchmarks/`), rewritten by
every run. Timings depend on the machine and on what else runs on it: see the load averages below.
Tests never assert timings; this page is where speed is measured.

## Machine
| | |
|---|---|
| date | {m['date']} |
| CPU | {m['cpu']} |
| cores | {m['cores']} ({m['cores_usable']} usable by this process) |
| RAM | {m['ram_gib']} GiB |
| GPU | {m['gpu'] or 'none (CPU only)'} |
| torch threads | {m['torch_threads']} by default (OMP_WAIT_POLICY={m['omp_wait_policy']}); the workload's: {r.threads} |
| load average 1/5/15 min | before {load(r.load_before)}, after {load(r.load_after)} |
| OS, Python | {m['os']}, Python {v.get('python')} |
| versions | torch {v.get('torch')}, transformers {v.get('transformers')}, hydra-core {v.get('hydra-core')} |
| git commit | {m['git_commit']} |
| `make bench` wall time | {r.bench_s:.0f} s |

Workload: the default config with `make run`'s settings (`python run.py threads=1 batch_size=64`): model
`{r.model}`, attack `{r.attack}`, max_new_tokens {r.max_new_tokens}, batch_size {r.batch_size}, greedy,
{r.threads} torch thread{'s' if r.threads != 1 else ''}.

## 1. Sweep cost: {r.n_layers} layers in one process vs one process per layer
Naive = `python run.py layer=L` once per layer (each process imports, loads the model, loads the
judges, renders and encodes the images). One process = `python run.py -m layer=0,...,{r.n_layers - 1}`
(the project's launcher, `hydra/launcher=vlmsafety`: Hydra's basic launcher, every job in one process,
the worker reusing the model and the image features, the layers' image batches decoded in shared calls) and `python run.py layers=[0,...,{r.n_layers - 1}]` (one Hydra job running every layer). Wall =
spawn to exit, summary included; each `-m` sweep is the best of two runs, with and without shared
batches taking turns (the others run once). LLM decoding = the jobs' `generate` timings from
metrics.json; overhead share = (wall − decoding) / wall.

{_md_table(SWEEP_HEADER, sweep_rows(r))}

Where the one-process sweeps spend their time (seconds; start-up = a process that only imports what
`run.py` imports and exits, measured apart):

{_md_table(BREAKDOWN_HEADER, breakdown_rows(r))}

## 2. Batched vs one-prompt-at-a-time generation
The same {r.generation[0].prompts} image prompts on `{r.model}` at its trained default layer, greedy,
max_new_tokens {r.max_new_tokens}; new tokens = tokens each row generated up to its end-of-sequence;
best of 3 passes, the batch sizes taking turns (the machine is shared: the best pass is the one least
disturbed by other processes).

{_md_table(GEN_HEADER, gen_rows(r))}

## 3. Unlearning: textual vs multimodal step time and tokens per step
{unlearn_section(r)}

{layer_batching_section(r)}
## GPU: 25-layer sweep of a LLaVA-1.5-7B-shaped model
{gpu_block(r)}

## Targets
{_md_table(["target", "measured (`-m layer=...` / `layers=[...]`)", ""], target_rows(r) + issue16_rows(r))}

{analysis(r)}
"""
    write_text_atomic(path, text)


def gpu_block(r: Results) -> str:
    """The GPU benchmark's section between its markers, so that `python -m benchmarks.gpu_sweep` can replace it."""
    from benchmarks import gpu_sweep

    return f"{gpu_sweep.BEGIN}\n{r.gpu_section or gpu_sweep.NOT_RUN}\n{gpu_sweep.END}"


def unlearn_section(r: Results) -> str:
    """Section 3 of PERFORMANCE.md: the unlearning step table and what sets the ratio."""
    text, multi = r.unlearning[0], r.unlearning[-1]
    return f"""`task=unlearn` with `unlearn=textual` and `unlearn=multimodal` on `{r.model}`, each with its own default
config (data, LoRA, batch size), through the real loop (`benchmarks/unlearning.py`): {text.steps} timed steps per
run after a warm-up step, the recipes taking turns over two runs, the lower median kept. A step = one
micro-batch of harmful requests (forget + helpful answers) and normal examples, the KL's reference pass
included; LM tokens count every token through the language model (image tokens included), FLOPs are the
estimate of `vlmsafety/unlearn/cost.py`.

{_md_table(UNLEARN_HEADER, unlearn_rows(r))}

The multimodal step does the same optimisation on longer sequences: every request and normal example
carries a picture ({multi.images_per_step:.0f} image encodings per step through the vision tower, counting the
reference pass, and their image tokens through every LM pass), so it processes {multi.tokens_per_step / text.tokens_per_step:.1f}× the LM tokens and costs
{multi.seconds_per_step / text.seconds_per_step:.1f}× the time of a textual step here. The whole-job ratio that
`make unlearn` prints (`unlearn_cost.csv`) also counts the steps each recipe ran."""
