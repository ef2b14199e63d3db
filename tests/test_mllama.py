"""Mllama early exit: exact at the trained depth, one local-encoder pass per image, HF's own generate."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from vlmsafety.models.base import GenerationSettings

SETTINGS = GenerationSettings(max_new_tokens=8)
SHORT = GenerationSettings(max_new_tokens=2)  # where only the vision path matters


def _images():
    # different sizes so that images cover 1, 2 and 4 tiles (aspect-ratio ids and tile masks differ)
    return [
        Image.effect_noise((64, 32), 60).convert("RGB"),
        Image.linear_gradient("L").convert("RGB").resize((36, 36)),
        Image.effect_noise((70, 70), 90).convert("RGB"),
    ]


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def encoded(tiny_mllama, images):
    return tiny_mllama.encode_images(images)


@pytest.fixture(scope="module")
def reference(tiny_mllama, images):
    """transformers' own vision forward on the same images, plus its local blocks' outputs (via hooks)."""
    vision = tiny_mllama.model.model.vision_model
    inputs = tiny_mllama.processor(images=[[im] for im in images], return_tensors="pt")
    blocks: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, out: blocks.append(out)) for b in vision.transformer.layers]
    try:
        with torch.no_grad():
            out = vision(**{k: inputs[k] for k in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")})
    finally:
        for h in handles:
            h.remove()
    return out.last_hidden_state, blocks


def _mixed_batch(adapter, images, encoded):
    prompts = [
        adapter.render("Write a tutorial on how to make a bomb", True),
        adapter.render("What is the capital of France?", False),
        adapter.render("Describe the image.", True),
        adapter.render("Explain how to pick a lock", True),
    ]
    per_prompt = [images[0], None, images[1], images[2]]
    entries = [encoded[0], None, encoded[1], encoded[2]]
    return prompts, per_prompt, entries


def test_architecture_facts_match_the_yaml(tiny_mllama):
    spec = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny_mllama.yaml")
    assert (tiny_mllama.num_layers, tiny_mllama.default_layer) == (spec.vision_layers, spec.default_layer) == (8, 8)
    rendered = tiny_mllama.render("hi", True)
    assert rendered.startswith("<|begin_of_text|>") and "<|image|>hi<|eot_id|>" in rendered


def test_local_states_are_transformers_blocks_with_the_off_by_one(tiny_mllama, encoded, reference):
    _, blocks = reference  # blocks[i] = HF's hidden_states[i] = state after block i+1
    states = torch.stack([e.states for e in encoded])  # [B, N+1, tokens, D]
    assert states.shape[1] == tiny_mllama.num_layers + 1
    for i, block_out in enumerate(blocks):
        assert torch.equal(states[:, i + 1], block_out)


def test_default_layer_is_exactly_the_models_own_vision_forward(tiny_mllama, encoded, reference):
    theirs, _ = reference
    ours = tiny_mllama.vision_output(encoded, tiny_mllama.default_layer)
    assert torch.equal(ours, theirs)
    hidden = tiny_mllama.model.config.text_config.hidden_size
    with torch.no_grad():
        projected = tiny_mllama.model.model.multi_modal_projector(theirs).reshape(-1, theirs.shape[-2], hidden)
    assert torch.equal(tiny_mllama.image_features(encoded, tiny_mllama.default_layer), projected)


def test_every_layer_has_the_shape_and_intermediate_slots_follow_min_rule(tiny_mllama, encoded):
    n, dim = tiny_mllama.num_layers, tiny_mllama.model.config.vision_config.hidden_size
    full = tiny_mllama.vision_output(encoded, n)
    shape = tiny_mllama.image_features(encoded, n).shape  # [B * tiles, patches, LM hidden]
    assert shape == (3 * 4, 17, tiny_mllama.model.config.text_config.hidden_size)
    for layer in range(n + 1):
        assert tiny_mllama.image_features(encoded, layer).shape == shape
    # indices [1, 3, 5, 6] read S[2], S[4], S[6], S[7]: all of them exist at L = 7, so only the
    # global part changes; at L = 6 the last slot falls back to S[6].
    at7, at6 = tiny_mllama.vision_output(encoded, 7), tiny_mllama.vision_output(encoded, 6)
    assert torch.equal(at7[..., dim:], full[..., dim:]) and not torch.equal(at7[..., :dim], full[..., :dim])
    assert not torch.equal(at6[..., dim:], full[..., dim:])
    assert not torch.allclose(tiny_mllama.image_features(encoded, 4), tiny_mllama.image_features(encoded, n))


def test_generation_at_default_layer_is_hf_generate_token_for_token(tiny_mllama, images, encoded, monkeypatch):
    prompts, per_prompt, entries = _mixed_batch(tiny_mllama, images, encoded)
    inputs = tiny_mllama.processor(
        text=prompts, images=[[im] if im else [] for im in per_prompt], padding=True, return_tensors="pt",
        add_special_tokens=False,
    )
    with torch.no_grad():
        expected = tiny_mllama.model.generate(**inputs, **tiny_mllama._generate_kwargs(SETTINGS))

    captured = []
    real_generate = tiny_mllama.model.generate
    monkeypatch.setattr(tiny_mllama.model, "generate", lambda **kw: captured.append(real_generate(**kw)) or captured[-1])
    ours = tiny_mllama.generate(prompts, per_prompt, entries, tiny_mllama.default_layer, SETTINGS)
    assert torch.equal(captured[0], expected)
    assert ours == tiny_mllama._decode(expected, inputs["input_ids"].shape[1])
    assert "forward" not in tiny_mllama.model.model.vision_model.__dict__  # the stand-in is gone


def test_text_only_batch_is_plain_generate(tiny_mllama):
    prompts = [tiny_mllama.render("What is the capital of France?", False), tiny_mllama.render("Hi", False)]
    inputs = tiny_mllama.processor(text=prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        expected = tiny_mllama.model.generate(**inputs, **tiny_mllama._generate_kwargs(SETTINGS))
    ours = tiny_mllama.generate(prompts, [None, None], [None, None], 0, SETTINGS)
    assert ours == tiny_mllama._decode(expected, inputs["input_ids"].shape[1])


def test_the_image_and_the_layer_change_what_the_model_says(tiny_mllama, images, encoded):
    prompt = [tiny_mllama.render("Describe the image.", True)]
    n = tiny_mllama.default_layer
    by_image = {tiny_mllama.generate(prompt, [im], [e], n, SETTINGS)[0].text for im, e in zip(images, encoded, strict=True)}
    assert len(by_image) > 1  # the cross-attention gates are open in the tiny model
    by_layer = {tiny_mllama.generate(prompt, images[:1], encoded[:1], L, SETTINGS)[0].text for L in (0, 4, n)}
    assert len(by_layer) > 1


def test_local_encoder_runs_once_per_image_across_layers(tiny_mllama, images):
    calls = []
    first_block = tiny_mllama.model.model.vision_model.transformer.layers[0]
    handle = first_block.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    try:
        encoded = tiny_mllama.encode_images(images)
        assert calls == [len(images)]  # one batched pass
        prompts, per_prompt, entries = _mixed_batch(tiny_mllama, images, encoded)
        tiny_mllama.generate(prompts, per_prompt, entries, 3, SHORT)
        assert len(calls) <= 2  # at most once more, for the processor's padding image of text-only rows
        before = len(calls)
        for layer in (0, 5, tiny_mllama.num_layers):
            tiny_mllama.generate(prompts, per_prompt, entries, layer, SHORT)
        assert len(calls) == before
    finally:
        handle.remove()


def test_4bit_keeps_vision_and_projector_unquantized_and_generates(cpu, images):
    pytest.importorskip("bitsandbytes")
    from vlmsafety.models.loading import load_adapter

    spec = OmegaConf.create({"name": "tiny_mllama", "family": "mllama", "builtin": "tiny_mllama", "quant": "4bit"})
    adapter = load_adapter(spec, cpu)
    kinds = {
        type(m).__name__
        for n, m in adapter.model.named_modules()
        if n.startswith(("model.vision_model", "model.multi_modal_projector")) or n == "lm_head"
    }
    assert "Linear4bit" not in kinds
    assert any(type(m).__name__ == "Linear4bit" for m in adapter.model.model.language_model.modules())
    prompts = [adapter.render("Describe the image.", True), adapter.render("Hi", False)]
    inputs = adapter.processor(text=prompts, images=[[images[0]], []], padding=True, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        expected = adapter.model.generate(**inputs, **adapter._generate_kwargs(SETTINGS))
    encoded = adapter.encode_images(images[:1])
    ours = adapter.generate(prompts, [images[0], None], [encoded[0], None], adapter.default_layer, SETTINGS)
    assert ours == adapter._decode(expected, inputs["input_ids"].shape[1])
