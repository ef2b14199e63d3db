"""The family-adapter interface: everything model-specific about early-exit generation.

One module per family (`vlmsafety/models/<family>.py`) subclasses `FamilyAdapter` and registers
itself with `@register_family`. Adding a family = one module + one YAML (DESIGN.md §3).
"""

from __future__ import annotations

import functools
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image
from transformers import AutoProcessor, BatchFeature
from transformers.modeling_outputs import BaseModelOutputWithPooling

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.decoding import eos_token_ids, unsupported_reason
from vlmsafety.models.facts import Architecture
from vlmsafety.models.residual import PromptStates, last_token_states
from vlmsafety.registry import Registry

log = logging.getLogger(__name__)

# The date the Llama 3.x chat templates print as "Today Date: " (`date_string`) when the config sets
# none. Unpinned, those templates write strftime_now("%d %b %Y"), so the same config would render
# different prompts on different days. This is the templates' own fallback for when strftime_now is
# undefined (Llama-3.2-11B-Vision-Instruct's chat_template: `{%- set date_string = "26 Jul 2024" %}`).
DEFAULT_CHAT_DATE = "26 Jul 2024"
CHAT_DATE_FORMAT = "%d %b %Y"  # the templates' strftime_now format


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    do_sample: bool = False  # greedy by default: deterministic records
    temperature: float = 1.0
    top_p: float = 1.0


@dataclass
class Generation:
    text: str  # decoded new tokens, special tokens removed, surrounding whitespace stripped
    n_new_tokens: int  # tokens generated up to and including the end-of-sequence token


class FamilyAdapter(ABC):
    """Wraps one loaded VLM (model + processor) and knows how to exit its vision encoder early.

    The contract the worker relies on:
    - `encode_images` runs the vision encoder once per image and returns, per image, an opaque
      object holding what every layer needs (the worker caches it by image content hash);
    - `generate` turns layer L's features into what the language model consumes and decodes.
    """

    family: ClassVar[str]
    model_class: ClassVar[type]  # the transformers class `from_pretrained` is called on
    # modules kept unquantized under `quant: 4bit/8bit` (vision tower and projector by default)
    quant_skip_modules: ClassVar[tuple[str, ...]] = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
    # where the language model sits (unlearning adapts modules under it only) and the projector's modules
    language_model_prefix: ClassVar[str] = "model.language_model"
    projector_modules: ClassVar[tuple[str, ...]] = ("model.multi_modal_projector",)
    # greedy answers come from `decoding.greedy_decode` (finished rows leave the batch; same tokens as
    # transformers' generate, tests/test_decoding.py) where the family's generate supports it
    row_dropping: ClassVar[bool] = False

    def __init__(self, model: Any, processor: Any, name: str = "model"):
        self.model = model
        self.processor = processor
        self.name = name
        # True while a job changes the weights (unlearning) and after, unless it restored them exactly:
        # the worker then never hands this model to a later job but loads the checkpoint again
        self.modified = False
        self.chat_date = DEFAULT_CHAT_DATE  # `date_string` for templates that read it (`model.chat_date`)
        # set while modified weights stay fixed (an unlearn job's "after" evaluation): text-only answers
        # may then be reused across layers under this tag, as they are for an unmodified model
        self.weights_tag: str | None = None
        self._rendered: dict[tuple, str] = {}  # `render`'s memo
        self._inputs_memo: list[tuple[list[str], list[Any], Any]] = []  # `model_inputs`' last processor batches
        tokenizer = getattr(processor, "tokenizer", processor)
        tokenizer.padding_side = "left"  # batched generation of decoder-only LMs needs left padding

    # --- architecture facts (from the config alone: `task=inspect` uses them without weights) ---
    @classmethod
    @abstractmethod
    def layer_range(cls, config: Any) -> tuple[int, int]:
        """(N, default): vision blocks that `layer` counts (valid layers 0..N) and the trained default."""

    @classmethod
    @abstractmethod
    def architecture(cls, config: Any) -> Architecture:
        """What `layer` means for this checkpoint, with feature and projector shapes."""

    @classmethod
    def load_processor(cls, source: str, **kwargs: Any) -> Any:
        """The checkpoint's own processor (tokenizer, image processor, chat template)."""
        return AutoProcessor.from_pretrained(source, **kwargs)

    @property
    def num_layers(self) -> int:
        """N: vision-encoder blocks that `layer` counts (valid layers are 0..N)."""
        return self.layer_range(self.model.config)[0]

    @property
    def default_layer(self) -> int:
        """The layer the model was trained with, in this project's 0..N convention."""
        return self.layer_range(self.model.config)[1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int | None:
        """The language model's context in tokens (max_position_embeddings), None when the config has none."""
        config = self.model.config
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        n = getattr(text, "max_position_embeddings", None)
        return int(n) if n else None

    @property
    def image_tokens_at_least(self) -> int:
        """The fewest positions one image takes in the language model's sequence, its placeholder included:
        what the prompt-length check (`prompt_fit`) counts for an image. 1 unless the family knows its
        processor's expansion (Mllama's image is one token: its features enter by cross-attention)."""
        return 1

    # --- inputs ---------------------------------------------------------------------------
    def markup(self) -> re.Pattern[str] | None:
        """The strings the tokenizer or processor would read as markup rather than text: special and added
        special tokens (`<image>`, `<|image_pad|>`, `</s>`, `<|eot_id|>`, ...), longest first."""
        if not hasattr(self, "_markup"):
            tokenizer = getattr(self.processor, "tokenizer", self.processor)
            found = set(getattr(tokenizer, "all_special_tokens", ()) or ())
            found |= {str(t) for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values() if getattr(t, "special", False)}
            found |= {getattr(self.processor, a, None) or "" for a in ("image_token", "video_token", "boi_token", "eoi_token")}
            tokens = sorted((t for t in found if len(t) > 1), key=len, reverse=True)
            self._markup = re.compile("|".join(map(re.escape, tokens))) if tokens else None
        return self._markup

    def neutralise(self, text: str) -> str:
        """`text` with any markup string broken by a space after its first character (`<image>` -> `< image>`):
        a prompt's text is data, never an image placeholder or a turn boundary."""
        markup = self.markup()
        return markup.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text) if markup else text

    def render(self, text: str, has_image: bool) -> str:
        """The exact prompt string the model sees, built with the checkpoint's own chat template (text neutralised)."""
        content: list[dict[str, Any]] = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": self.neutralise(text)})
        template = getattr(self.processor, "chat_template", None)
        if not template:
            raise VlmSafetyError(
                f"{self.name}: the processor has no chat template; set one in the checkpoint's "
                "chat_template.jinja (or processor_config.json)"
            )
        variables = self.template_vars()
        # every job of a sweep renders the same prompts: remembered per template, text and variables
        key = (template if isinstance(template, str) else repr(template), text, has_image, tuple(sorted(variables.items())))
        memo = self._rendered
        if key not in memo:
            if len(memo) >= _RENDER_MEMO_SIZE:
                memo.clear()
            memo[key] = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, **variables
            )
        return memo[key]

    def template_vars(self) -> dict[str, str]:
        """Extra variables for the chat template: `date_string` (the pinned `chat_date`) where the template reads it.

        Only templates that mention `date_string` get it: transformers passes a variable that the
        template does not read on to the processor, with a warning.
        """
        template = getattr(self.processor, "chat_template", None)
        return {"date_string": self.chat_date} if "date_string" in str(template or "") else {}

    def render_answer(self, text: str, has_image: bool, answer: str) -> str:
        """What follows `render(text, has_image)` when the assistant answers `answer`, end-of-turn token included.

        Built with the checkpoint's own chat template (a user turn, then an assistant turn); a
        template that does not close the turn gets the model's end-of-sequence token appended, so
        that training on it also teaches the model to stop.
        """
        prompt = self.render(text, has_image)
        content: list[dict[str, Any]] = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": self.neutralise(text)})
        reply = [{"type": "text", "text": self.neutralise(answer)}]
        messages = [{"role": "user", "content": content}, {"role": "assistant", "content": reply}]
        full = self.processor.apply_chat_template(messages, **self.template_vars()).rstrip()
        if not full.startswith(prompt):
            raise VlmSafetyError(
                f"{self.name}: the chat template does not continue the generation prompt {prompt[-40:]!r} with the "
                "assistant turn, so answer tokens cannot be told apart; set model.chat_template to one that does"
            )
        tail = full[len(prompt):]
        ends = self.end_of_turn_tokens()
        return tail if any(tail.endswith(t) for t in ends) else tail + ends[0]

    def end_of_turn_tokens(self) -> list[str]:
        """The token strings that end an answer (generation's EOS ids), the tokenizer's EOS first."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        ids = eos_token_ids(self.model)
        if not ids:
            raise VlmSafetyError(f"{self.name}: the generation config has no eos_token_id; set one in generation_config.json")
        ids.sort(key=lambda i: i != tokenizer.eos_token_id)
        return [tokenizer.convert_ids_to_tokens(i) for i in ids]

    def model_inputs(self, prompts: Sequence[str], images: Sequence[Image.Image | None]) -> Any:
        """Processor outputs for rendered prompts with their images (None = text only), left-padded, as `model(...)` takes them.

        The processor treats rows apart (padding them to the longest), so a batch made of k copies of the
        same rows (a cross-layer batch) gets one copy's outputs repeated k times, and the last two batches
        are remembered (by their prompts and their images' identity: an image drawn on in place would not
        be seen; the worker's images never are): the image processing of a batch runs once, not once per
        layer. A fresh mapping is returned every time (callers may move or replace its tensors)."""
        n = _period(prompts, images)
        batch = self._processed(prompts[:n], images[:n])
        copies = len(prompts) // n if n else 1
        if copies > 1 and not all(torch.is_tensor(v) and v.dim() > 0 for v in batch.values()):
            batch, copies = self._processed(prompts, images), 1  # a value the rows cannot be read off
        return BatchFeature({
            key: value.repeat(copies, *[1] * (value.dim() - 1)) if copies > 1 else value for key, value in batch.items()
        })

    def _processed(self, prompts: Sequence[str], images: Sequence[Image.Image | None]) -> Any:
        memo = self._inputs_memo
        for kept_prompts, kept_images, batch in memo:
            if kept_prompts == list(prompts) and len(kept_images) == len(images) and all(
                a is b for a, b in zip(kept_images, images, strict=True)
            ):
                return batch
        batch = self.process(prompts, images)
        memo.insert(0, (list(prompts), list(images), batch))  # the images are kept: their identities stay valid
        del memo[_INPUTS_MEMO_SIZE:]
        return batch

    def process(self, prompts: Sequence[str], images: Sequence[Image.Image | None]) -> Any:
        """The processor call behind `model_inputs` (a family whose processor pairs images otherwise overrides it)."""
        present = [img for img in images if img is not None]
        return self.processor(
            text=list(prompts), images=present or None, padding=True, return_tensors="pt",
            add_special_tokens=self._needs_bos(prompts),
        )

    def vision_tokens(self, inputs: Any) -> int:
        """Tokens the vision encoder processed for `inputs` (patches of every image and tile; for cost estimates)."""
        pixels = inputs.get("pixel_values") if hasattr(inputs, "get") else None
        if pixels is None:
            return 0
        v = self.model.config.vision_config
        return int(pixels.numel() // (getattr(v, "num_channels", 3) * v.patch_size**2))

    # --- vision -----------------------------------------------------------------------------
    @abstractmethod
    def encode_images(self, images: Sequence[Image.Image]) -> list[Any]:
        """One vision-encoder pass over `images`; per image, everything every layer needs."""

    @staticmethod
    def entry_nbytes(entry: Any) -> int:
        """Memory held by one `encode_images` entry (for the worker's cache budget)."""
        if isinstance(entry, torch.Tensor):
            return entry.numel() * entry.element_size()
        if isinstance(entry, (list, tuple)):
            return sum(FamilyAdapter.entry_nbytes(e) for e in entry)
        if isinstance(entry, dict):
            return sum(FamilyAdapter.entry_nbytes(e) for e in entry.values())
        return 0

    @contextmanager
    def layer_inputs(
        self, inputs: dict[str, torch.Tensor], encoded: Sequence[Any], layers: Sequence[int]
    ) -> Iterator[dict[str, Any]]:
        """While active: `model(**...)` arguments in which row i's image is replaced by layer
        `layers[i]`'s features, exactly as `generate` feeds that layer (layer-wise training).

        inputs: a processor batch of image prompts, one image per row (`model_inputs`, answer tokens
        may follow the prompt); encoded: per row, the image's `encode_images` entry. Gradients flow
        through whatever of the vision side trains (a projector copy); the vision tower is frozen.
        """
        raise NotImplementedError(f"{self.family}: training at sampled vision layers is not implemented for this family")
        yield {}  # pragma: no cover

    # --- generation --------------------------------------------------------------------------
    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image | None],
        encoded: Sequence[Any | None],
        layer: int | Sequence[int],
        settings: GenerationSettings,
    ) -> list[Generation]:
        """Generate one answer per prompt, feeding the LM layer `layer`'s image features.

        prompts: rendered prompts (from `render`); images/encoded: per prompt, the image and its
        `encode_images` entry, or None for a text-only prompt; layer: absolute depth in 0..N, one
        for every row or one per row (rows of different layers share a batch: DESIGN.md §4).
        """

    def _encoder_outputs(self, entries: Sequence[Any], layers: Sequence[int]) -> dict[str, BaseModelOutputWithPooling]:
        """transformers' `mm_encoder_outputs` (the families that take precomputed image features):
        image i as layer `layers[i]`'s projected (LLaVA) or merged (Qwen) features."""
        feats = [self.image_features(e, layer) for e, layer in zip(entries, layers, strict=True)]
        return {"image": BaseModelOutputWithPooling(pooler_output=feats)}

    def _precomputed_lm_inputs(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None], encoded: Sequence[Any | None], layer: int,
        keys: Sequence[str], image_keys: Sequence[str] = (),
    ) -> dict[str, Any]:
        """`lm_inputs` of the families fed through `mm_encoder_outputs`: the processor's `keys` (plus
        `image_keys` when the batch has an image) on the device, and layer `layer`'s features."""
        inputs = self.model_inputs(prompts, images)
        kwargs: dict[str, Any] = {key: inputs[key].to(self.device) for key in keys}
        entries = [e for e in encoded if e is not None]
        if entries:
            kwargs.update({key: inputs[key].to(self.device) for key in image_keys})
            kwargs["mm_encoder_outputs"] = self._encoder_outputs(entries, [layer] * len(entries))
        return kwargs

    # --- one forward pass, no generation (task=probe) ---------------------------------------------
    def lm_inputs(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None], encoded: Sequence[Any | None], layer: int
    ) -> AbstractContextManager[dict[str, Any]]:
        """A context giving the keyword arguments of `self.model(...)` that feed layer `layer`'s features,
        built as `generate` builds its inputs (same arguments as `generate`)."""
        raise VlmSafetyError(f"{self.name}: the {self.family} family has no lm_inputs, so task=probe cannot run it")

    def first_image_lm_layer(self) -> int:
        """The first hidden-state index of `prompt_states` at which the last prompt token can have read the image:
        1 (block 0's output) where image tokens sit in the sequence, since index 0 is that token's own embedding."""
        return 1

    def prompt_states(
        self, prompts: Sequence[str], images: Sequence[Image.Image | None], encoded: Sequence[Any | None], layer: int
    ) -> PromptStates:
        """One forward pass (no generation) at vision layer `layer`: the LM's residual stream at the last
        prompt token after every block, and the logits of the first answer token."""
        blocks = self.model.get_submodule(self.language_model_prefix).layers
        with self.lm_inputs(prompts, images, encoded, layer) as inputs:
            return last_token_states(self.model, blocks, inputs)

    def row_memory_bytes(self, tokens: int) -> int:
        """Memory one generate row holds with `tokens` tokens (padded prompt + new): its KV cache in the
        LM's dtype plus its float32 next-token logits (the budget of cross-layer batches)."""
        text = self.model.config.get_text_config()
        heads = text.num_attention_heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        element = torch.finfo(self.lm_dtype).bits // 8
        return 2 * text.num_hidden_layers * kv_heads * head_dim * element * tokens + 4 * text.vocab_size

    @property
    def lm_dtype(self) -> torch.dtype:
        """The dtype activations and the KV cache take (a 4-bit model's compute dtype)."""
        head = self.model.get_output_embeddings()
        weight = getattr(head, "weight", None)
        return weight.dtype if weight is not None and weight.is_floating_point() else torch.float16

    # --- helpers shared by families ---------------------------------------------------------------
    @staticmethod
    def row_layers(layer: int | Sequence[int], rows: int) -> list[int]:
        """`generate`'s `layer` as one layer per row."""
        if isinstance(layer, int):
            return [layer] * rows
        layers = [int(v) for v in layer]
        if len(layers) != rows:
            raise ValueError(f"{len(layers)} layers for {rows} rows")
        return layers

    def _needs_bos(self, prompts: Sequence[str]) -> bool:
        """Whether tokenizing must add BOS: not when the chat template already wrote it (Llama 3)."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        bos = tokenizer.bos_token
        return not (bos and all(p.startswith(bos) for p in prompts))

    def _decode(self, sequences: torch.Tensor, prompt_len: int) -> list[Generation]:
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        eos_ids = set(eos_token_ids(self.model))
        pad = tokenizer.pad_token_id
        out = []
        for row in sequences[:, prompt_len:].tolist():
            n = 0
            for tok in row:
                n += 1
                if tok in eos_ids:
                    break
            else:
                # no EOS: trailing pads (if any) were never generated
                while n and row[n - 1] == pad and pad not in eos_ids:
                    n -= 1
            text = tokenizer.decode(row[:n], skip_special_tokens=True).strip()
            out.append(Generation(text=text, n_new_tokens=n))
        return out

    def drops_finished_rows(self, settings: GenerationSettings) -> bool:
        """Whether `generate` decodes with `decoding.greedy_decode` (finished rows leave the batch) rather than
        transformers' `generate`: greedy settings, a family that feeds the prompt's extras in the first step
        only (`row_dropping`), and a generation config that adds nothing to a greedy step."""
        return not settings.do_sample and self.row_dropping and self._row_dropping_blocked is None

    @functools.cached_property
    def _row_dropping_blocked(self) -> str | None:
        """Why this model's generation config keeps transformers' `generate` (decided once, logged), or None."""
        reason = unsupported_reason(self.model)
        if reason:
            log.info("%s decodes with transformers' generate: %s", self.name, reason)
        return reason

    def _generate_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample}
        if settings.do_sample:
            kw.update(temperature=settings.temperature, top_p=settings.top_p)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw


_RENDER_MEMO_SIZE = 100_000  # rendered prompts remembered per adapter (cleared when full)
_INPUTS_MEMO_SIZE = 2  # processor batches remembered per adapter (one batch is decoded at every layer in a row)


def _period(prompts: Sequence[str], images: Sequence[Any]) -> int:
    """The fewest leading rows of which the batch is whole copies (`len(prompts)` when it repeats nothing)."""
    total = len(prompts)
    for n in range(1, total):
        if total % n == 0 and all(
            prompts[i] == prompts[i % n] and images[i] is images[i % n] for i in range(n, total)
        ):
            return n
    return total


def _load_builtins() -> None:
    import vlmsafety.models  # noqa: F401  (registers the shipped families)


FAMILIES: Registry[type[FamilyAdapter]] = Registry("model family", _load_builtins)


def register_family(cls: type[FamilyAdapter]) -> type[FamilyAdapter]:
    return FAMILIES.register(cls.family)(cls)


def get_family(name: str) -> type[FamilyAdapter]:
    return FAMILIES.get(name, where="model.family")
