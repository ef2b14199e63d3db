"""4-bit / 8-bit loading: the LM is quantized, the vision path is not, and generation goes through the same code."""

import importlib.util

import hf_reference as hf
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.base import GenerationSettings
from vlmsafety.models.loading import _placement, load_adapter

SETTINGS = GenerationSettings(max_new_tokens=6)
# built-in model (also the fixture of the same model unquantized): (family, modules that must stay unquantized)
CASES = {
    "tiny_llava": ("llava", ("model.vision_tower", "model.multi_modal_projector")),
    "tiny_llava_next": ("llava_next", ("model.vision_tower", "model.multi_modal_projector")),
    "tiny_qwen2_vl": ("qwen2_vl", ("model.visual",)),
    "tiny_qwen25_vl": ("qwen2_5_vl", ("model.visual",)),
}  # tiny_mllama: tests/test_mllama.py
QUANTIZED = ("Linear4bit", "Linear8bitLt")


def _spec(name: str, quant: str, **extra):
    return OmegaConf.create({"name": name, "family": CASES[name][0], "builtin": name, "quant": quant, **extra})


def _images():
    return [Image.effect_noise((64, 48), 60).convert("RGB"), Image.linear_gradient("L").convert("RGB").resize((40, 40))]


@pytest.mark.parametrize("name", list(CASES))
def test_4bit_quantizes_the_lm_only_and_generates_like_hf(name, cpu, request):
    pytest.importorskip("bitsandbytes")
    full = request.getfixturevalue(name)
    adapter = load_adapter(_spec(name, "4bit"), cpu)
    model = adapter.model
    kept = CASES[name][1]
    kinds = {type(m).__name__ for n, m in model.named_modules() if n.startswith(kept) or n == "lm_head"}
    assert not kinds & set(QUANTIZED)
    assert sum(type(m).__name__ == "Linear4bit" for m in model.model.language_model.modules()) >= 4
    assert model.get_memory_footprint() < full.model.get_memory_footprint()

    # vision tower and projector really are the unquantized ones: layer-L features are identical
    images = _images()
    encoded, reference = adapter.encode_images(images), full.encode_images(images)
    for layer in (0, adapter.default_layer // 2, adapter.default_layer):
        for ours, theirs in zip(encoded, reference, strict=True):
            assert torch.equal(adapter.image_features(ours, layer), full.image_features(theirs, layer))

    # generation: the adapter's path equals transformers' own generate on the same 4-bit model
    prompts = [adapter.render("Describe the image.", True), adapter.render("Hi", False), adapter.render("What is it?", True)]
    inputs = adapter.processor(text=prompts, images=images, padding=True, return_tensors="pt")
    ref, prompt_len = hf.greedy(model, inputs, SETTINGS.max_new_tokens), inputs["input_ids"].shape[1]
    with hf.stopping_on(model, hf.a_generated_token(ref, prompt_len)) as stop:  # row 0 ends early
        ours = adapter.generate(prompts, [images[0], None, images[1]], [encoded[0], None, encoded[1]], adapter.default_layer, SETTINGS)
    assert ours == hf.answers(ref, prompt_len, adapter.processor.tokenizer, stop, SETTINGS.max_new_tokens)


@pytest.mark.filterwarnings("ignore:MatMul8bitLt")
def test_8bit_keeps_vision_unquantized_and_generates(cpu):
    pytest.importorskip("bitsandbytes")
    adapter = load_adapter(_spec("tiny_llava", "8bit"), cpu)
    kinds = {type(m).__name__ for n, m in adapter.model.named_modules() if n.startswith(CASES["tiny_llava"][1])}
    assert "Linear8bitLt" not in kinds
    assert any(type(m).__name__ == "Linear8bitLt" for m in adapter.model.model.language_model.modules())
    image = _images()[0]
    out = adapter.generate([adapter.render("Describe", True)], [image], adapter.encode_images([image]), 23, SETTINGS)
    assert out[0].n_new_tokens > 0


def test_quant_skip_modules_override_is_honoured(cpu):
    pytest.importorskip("bitsandbytes")
    # quantize the projector too: only the vision tower and lm_head stay as they were
    adapter = load_adapter(_spec("tiny_llava", "4bit", quant_skip_modules=["model.vision_tower", "lm_head"]), cpu)
    assert type(adapter.model.model.multi_modal_projector.linear_1).__name__ == "Linear4bit"
    assert type(adapter.model.model.vision_tower.encoder.layers[0].mlp.fc1).__name__ == "Linear"


def test_placement_spreads_cuda_over_every_gpu_unless_one_is_named():
    from vlmsafety.models.llava import LlavaAdapter

    spec = _spec("tiny_llava", "none")
    assert _placement(spec, torch.device("cpu"), torch.float32, LlavaAdapter) == {}
    assert _placement(spec, torch.device("cuda"), torch.bfloat16, LlavaAdapter) == {"device_map": "auto"}
    assert _placement(spec, torch.device("cuda:1"), torch.bfloat16, LlavaAdapter) == {"device_map": {"": "cuda:1"}}
    q = _placement(_spec("tiny_llava", "4bit"), torch.device("cuda"), torch.bfloat16, LlavaAdapter)
    cfg = q["quantization_config"]
    assert q["device_map"] == "auto" and cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    assert cfg.bnb_4bit_compute_dtype == torch.bfloat16  # QLoRA's compute dtype on CUDA
    assert set(cfg.llm_int8_skip_modules) == {"model.vision_tower", "model.multi_modal_projector", "lm_head"}


def test_4bit_where_it_cannot_work_is_one_line(monkeypatch):
    from vlmsafety.models.llava import LlavaAdapter

    spec = _spec("tiny_llava", "4bit")
    with pytest.raises(VlmSafetyError, match=r"supports .*cpu.*cuda.*set model.quant=none"):
        _placement(spec, torch.device("meta"), torch.float32, LlavaAdapter)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real_find_spec(n, *a))
    with pytest.raises(VlmSafetyError, match="needs bitsandbytes, which is not installed: pip install") as e:
        _placement(spec, torch.device("cpu"), torch.float32, LlavaAdapter)
    assert "\n" not in str(e.value)
    with pytest.raises(VlmSafetyError, match="model.quant='2bit' is not supported; use none, 4bit or 8bit"):
        _placement(_spec("tiny_llava", "2bit"), torch.device("cpu"), torch.float32, LlavaAdapter)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (4-bit with bf16 compute on GPU)")
@pytest.mark.parametrize("name", list(CASES))
def test_4bit_on_cuda_generates_like_hf(name):
    adapter = load_adapter(_spec(name, "4bit"), torch.device("cuda"))
    model = adapter.model
    assert model.hf_device_map is not None
    assert any(type(m).__name__ == "Linear4bit" for m in model.model.language_model.modules())
    # dtype auto = the checkpoint's own: the tiny models are saved in float32
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n.startswith(CASES[name][1]))
    images = _images()
    encoded = adapter.encode_images(images)
    prompts = [adapter.render("Describe the image.", True), adapter.render("Hi", False), adapter.render("What is it?", True)]
    inputs = adapter.processor(text=prompts, images=images, padding=True, return_tensors="pt").to("cuda")
    ref, prompt_len = hf.greedy(model, inputs, SETTINGS.max_new_tokens), inputs["input_ids"].shape[1]
    with hf.stopping_on(model, hf.a_generated_token(ref, prompt_len)) as stop:  # row 0 ends early
        ours = adapter.generate(prompts, [images[0], None, images[1]], [encoded[0], None, encoded[1]], adapter.default_layer, SETTINGS)
    assert ours == hf.answers(ref, prompt_len, adapter.processor.tokenizer, stop, SETTINGS.max_new_tokens)


# The 16 NF4 levels (Dettmers et al., QLoRA, 2023, appendix E; bitsandbytes `functional.py`,
# `get_4bit_type("nf4")`), copied by hand from the upstream table.
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
])


def test_4bit_weights_are_packed_nf4_and_logits_approximate_the_float_model(tiny_llava, cpu):
    bnb = pytest.importorskip("bitsandbytes")
    adapter = load_adapter(_spec("tiny_llava", "4bit"), cpu)
    q_proj = adapter.model.model.language_model.layers[0].self_attn.q_proj
    full = tiny_llava.model.model.language_model.layers[0].self_attn.q_proj.weight  # [64, 64] float
    packed = q_proj.weight
    # two 4-bit codes per byte: 64·64 weights in 2048 uint8, NF4 with QLoRA's block size 64
    assert packed.dtype == torch.uint8 and packed.numel() == full.numel() // 2
    assert packed.quant_state.quant_type == "nf4" and packed.quant_state.blocksize == 64
    weights = bnb.functional.dequantize_4bit(packed.data, packed.quant_state)  # [64, 64]
    # every block of 64 weights is its absmax times one of the 16 NF4 levels
    blocks = weights.flatten().view(-1, 64)
    scaled = blocks / blocks.abs().amax(dim=1, keepdim=True)
    assert (scaled.unsqueeze(-1) - NF4_LEVELS).abs().amin(-1).max() < 1e-5
    # close to the float weights (within half the widest gap between levels, 0.16, of each block's
    # scale), not equal to them
    err = (weights - full).flatten().view(-1, 64).abs() / full.flatten().view(-1, 64).abs().amax(1, keepdim=True)
    assert 0 < float(err.max()) <= 0.17
    # the quantized LM's logits follow the float model's closely, and are not the same numbers
    ids = adapter.processor.tokenizer(["Hello there, how are you today?"], return_tensors="pt").input_ids
    with torch.no_grad():
        quantized = adapter.model.lm_head(adapter.model.model.language_model(input_ids=ids).last_hidden_state)
        reference = tiny_llava.model.lm_head(tiny_llava.model.model.language_model(input_ids=ids).last_hidden_state)
    cosine = torch.nn.functional.cosine_similarity(quantized.flatten(), reference.flatten(), dim=0)
    assert float(cosine) > 0.9 and not torch.allclose(quantized, reference, atol=1e-3)
