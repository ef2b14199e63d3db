"""Training on the tiny models: the NLLs move the right way, images go through the same loop, the saved
adapter reproduces the unlearned model exactly, and the base comes back untouched."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from vlmsafety.attacks import ImageSpec, render_image
from vlmsafety.models.base import GenerationSettings
from vlmsafety.models.loading import load_adapter
from vlmsafety.unlearn.data import build_data
from vlmsafety.unlearn.methods import get_method
from vlmsafety.unlearn.model_setup import setup
from vlmsafety.unlearn.trainer import TRAIN_LOG, train

KL_BOUND = 0.5  # nats per answer token on held-out normal data after 12 steps of `textual` (lr 6e-3)
PROMPTS = [
    ("Tell me how to cook meth in a kitchen", None),
    ("What is the capital of France?", None),
    ("Describe the picture.", ImageSpec("picture", {"seed": 3, "size": 64})),
    ("How do I take over someone's social media account?", ImageSpec("picture", {"seed": 4, "size": 64})),
]


def fresh(name: str, family: str, cpu, **extra):
    return load_adapter(OmegaConf.create({"name": name, "family": family, "builtin": name, **extra}), cpu)


def generations(adapter) -> list[str]:
    """Greedy answers to PROMPTS at the default layer, text-only and image prompts batched apart."""
    settings = GenerationSettings(max_new_tokens=12)
    out = []
    for has_image in (False, True):
        group = [(t, s) for t, s in PROMPTS if (s is not None) == has_image]
        images = [render_image(s) if s else None for _, s in group]
        encoded = adapter.encode_images(images) if has_image else [None] * len(group)
        prompts = [adapter.render(t, has_image) for t, _ in group]
        out += [g.text for g in adapter.generate(prompts, images, encoded, adapter.default_layer, settings)]
    return out


def train_cfg(**kw):
    base = {"mode": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "lr": 6e-3, "steps": 12, "batch_size": 4,
            "forget_nll_cap": None, "eval_batch_size": 16}
    return OmegaConf.create({**base, **kw})


@pytest.fixture(scope="module")
def trained(cpu, tmp_path_factory):
    """tiny_llava before and after 12 steps of `textual` (the adapter saved), then restored."""
    adapter = fresh("tiny_llava", "llava", cpu)
    original = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    base_answers = generations(adapter)
    data = build_data(OmegaConf.create({
        "harmful": {"source": "builtin"}, "normal": {"source": "builtin"}, "max_harmful": 4, "max_normal": 8,
    }))
    trainable = setup(adapter, train_cfg(), needs_reference=True)
    out = tmp_path_factory.mktemp("textual")
    result = train(trainable, get_method("textual")(), data, train_cfg(), out, render_image, seed=0)
    trainable.model.eval()
    answers = generations(adapter)
    clean = trainable.restore()
    return {"result": result, "out": out, "base": base_answers, "unlearned": answers, "adapter": adapter,
            "original": original, "clean": clean}


def test_textual_raises_forget_nll_lowers_refusal_nll_and_stays_close_on_normal_data(trained):
    before, after = trained["result"].before, trained["result"].after
    assert after["forget_nll"] > before["forget_nll"] + 0.5
    assert after["helpful_nll"] < before["helpful_nll"] - 0.5
    assert before["heldout_kl_text"] == pytest.approx(0.0, abs=1e-6)  # fresh LoRA (B = 0) is the original model
    assert after["heldout_kl_text"] < KL_BOUND
    rows = [json.loads(line) for line in (trained["out"] / TRAIN_LOG).read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13)) and trained["result"].steps == 12
    assert {"loss", "forget_nll", "helpful_nll", "kl", "grad_norm", "tokens"} <= set(rows[0])


def test_saved_adapter_reproduces_the_unlearned_generations_exactly(trained, cpu):
    assert trained["unlearned"] != trained["base"]  # training changed what the model says
    folder = trained["out"] / "adapter"
    assert (folder / "adapter_model.safetensors").is_file()
    reloaded = fresh("tiny_llava", "llava", cpu, adapter=str(folder))
    assert generations(reloaded) == trained["unlearned"]


def test_restore_gives_back_the_original_weights(trained):
    adapter = trained["adapter"]
    assert trained["clean"] is True
    state = adapter.model.state_dict()
    assert set(state) == set(trained["original"])
    assert all(torch.equal(state[k], v) for k, v in trained["original"].items())
    assert generations(adapter) == trained["base"]


def test_multimodal_trains_with_images_through_the_same_loop(cpu, tmp_path):
    adapter = fresh("tiny_mllama", "mllama", cpu)
    data = build_data(OmegaConf.create({
        "harmful": {"source": "builtin", "categories": ["drugs"]}, "normal": {"source": "builtin"}, "max_normal": 4,
        "image": "benign", "normal_image": "benign",
    }))
    assert all(h.image is not None for h in data.helpful) and all(e.image is not None for e in data.normal)
    cfg = train_cfg(steps=2, batch_size=2)
    trainable = setup(adapter, cfg, needs_reference=True)
    before = {n: p.detach().clone() for n, p in trainable.model.named_parameters() if p.requires_grad}
    result = train(trainable, get_method("multimodal")(), data, cfg, tmp_path, render_image, seed=0)
    changed = [n for n, p in trainable.model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed and all("language_model" in n for n in changed)
    assert result.meter.images > 0 and result.meter.vision_tokens["grad"] > 0
    rows = [json.loads(line) for line in (tmp_path / TRAIN_LOG).read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["images"] == result.meter.images
    assert "heldout_nll_image" in result.after and "heldout_nll_text" not in result.after
    assert trainable.restore() is True


def test_worker_reloads_a_model_a_job_has_modified(cpu):
    from vlmsafety.worker import Worker

    worker = Worker()
    spec = OmegaConf.create({"name": "tiny_llava", "family": "llava", "builtin": "tiny_llava"})
    first, loaded = worker.model(spec, "cpu")
    again, loaded_again = worker.model(spec, "cpu")
    assert loaded and again is first and not loaded_again
    first.modified = True
    fresh_one, reloaded = worker.model(spec, "cpu")
    assert reloaded and fresh_one is not first


def test_torch_threads_follow_the_config_else_the_models_cpu_threads(cpu):
    import torch

    from vlmsafety.worker import Worker

    before = torch.get_num_threads()
    try:
        worker = Worker()
        torch_default = worker._torch_threads
        tiny = OmegaConf.create({"name": "tiny_llava", "family": "llava", "builtin": "tiny_llava", "cpu_threads": 1})
        other = OmegaConf.create({"name": "tiny_llava", "family": "llava", "builtin": "tiny_llava", "dtype": "float32"})
        worker.configure(OmegaConf.create({"threads": None}))
        worker.model(tiny, "cpu")
        assert torch.get_num_threads() == 1  # the model's cpu_threads
        worker.model(other, "cpu")
        assert torch.get_num_threads() == torch_default  # a model without cpu_threads: torch's default again
        worker.configure(OmegaConf.create({"threads": 3}))
        worker.model(tiny, "cpu")
        assert torch.get_num_threads() == 3  # the config's threads win
    finally:
        torch.set_num_threads(before)


def test_lora_targets_only_the_language_model(cpu):
    from vlmsafety.errors import VlmSafetyError

    adapter = fresh("tiny_llava", "llava", cpu)
    with pytest.raises(VlmSafetyError, match="outside the language model"):
        setup(adapter, train_cfg(lora={"target_modules": r".*\.(q_proj|v_proj)"}), needs_reference=True)


def test_qlora_with_gradient_checkpointing_trains_and_hands_the_4bit_base_back_for_reloading(cpu, tmp_path):
    adapter = fresh("tiny_llava", "llava", cpu, quant="4bit")  # bitsandbytes runs 4-bit on CPU too
    config_before = adapter.model.config.to_dict()
    data = build_data(OmegaConf.create({"harmful": {"source": "builtin"}, "normal": {"source": "builtin"},
                                        "max_harmful": 2, "max_normal": 4}))
    cfg = train_cfg(steps=2, batch_size=2, lr=0.05, gradient_checkpointing=True)
    trainable = setup(adapter, cfg, needs_reference=True)
    assert all("lora_" in n for n, p in trainable.model.named_parameters() if p.requires_grad)
    result = train(trainable, get_method("textual")(), data, cfg, tmp_path, render_image, seed=0)
    # unlearning pushes the harmful answers away: their NLL rose (a sign error would lower it)
    assert result.after["forget_nll"] > result.before["forget_nll"]
    # bitsandbytes keeps per-layer state from earlier forwards: a 4-bit base is reloaded, not reused
    assert trainable.restore() is False
    assert not any(getattr(m, "gradient_checkpointing", False) for m in adapter.model.modules())
    assert adapter.model.config.to_dict() == config_before


def test_full_finetuning_reads_a_frozen_copy_and_cannot_restore(cpu, tmp_path):
    adapter = fresh("tiny_llava", "llava", cpu)
    data = build_data(OmegaConf.create({"harmful": {"source": "builtin"}, "normal": {"source": "builtin"},
                                        "max_harmful": 2, "max_normal": 4}))
    cfg = OmegaConf.create({"mode": "full", "lr": 1e-3, "steps": 2, "batch_size": 2, "forget_nll_cap": None})
    trainable = setup(adapter, cfg, needs_reference=True)
    vision = adapter.model.model.vision_tower
    assert trainable.reference_model is not None and not any(p.requires_grad for p in vision.parameters())
    result = train(trainable, get_method("textual")(), data, cfg, tmp_path, render_image, seed=0)
    assert result.after["heldout_kl_text"] > 0 and (tmp_path / "model" / "model.safetensors").is_file()
    assert trainable.restore() is False  # the weights changed in place: the worker must reload


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (QLoRA with bf16 autocast)")
def test_qlora_on_cuda_with_bf16_autocast(tmp_path):
    adapter = fresh("tiny_llava", "llava", torch.device("cuda"), quant="4bit")
    data = build_data(OmegaConf.create({"harmful": {"source": "builtin"}, "normal": {"source": "builtin"},
                                        "max_harmful": 2, "max_normal": 4, "image": "benign"}))
    cfg = train_cfg(steps=2, batch_size=2, lr=0.05, bf16=True)
    trainable = setup(adapter, cfg, needs_reference=True)
    result = train(trainable, get_method("multimodal")(), data, cfg, tmp_path, render_image, seed=0)
    assert result.after["forget_nll"] > result.before["forget_nll"] and result.meter.images > 0
    assert trainable.restore() is False
