"""Layer-wise safety tuning: layer sampling, the training forward at a sampled layer, DPO, the reference
pass and save → load at several layers."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf

from vlmsafety.attacks import render_image
from vlmsafety.errors import VlmSafetyError
from vlmsafety.models.base import GenerationSettings
from vlmsafety.unlearn.batches import Meter, forward_logits, make_batch
from vlmsafety.unlearn.data import Example, build_data
from vlmsafety.unlearn.layers import layer_distribution
from vlmsafety.unlearn.methods import LossContext, TrainBatch, get_method
from vlmsafety.unlearn.model_setup import setup
from vlmsafety.unlearn.organism import shape_picture
from vlmsafety.unlearn.trainer import Sampler, sampled_layers

# --- layer sampling (pure) ----------------------------------------------------------------------------


def test_layer_values_parse_to_distributions_and_bad_ones_say_what_to_fix():
    uniform = layer_distribution("uniform", 24, 23)
    assert uniform.layers == tuple(range(25)) and uniform.probs == pytest.approx([1 / 25] * 25)
    assert layer_distribution(None, 24, 23) == uniform
    assert layer_distribution("default", 24, 23).layers == (23,)
    assert layer_distribution([0, -1, 12, 12], 24, 23).layers == (0, 12, 24)  # -1 = N, duplicates once
    weighted = layer_distribution(OmegaConf.create({23: 2, 0: 1, 12: 1}), 24, 23)
    assert weighted.layers == (0, 12, 23) and weighted.probs == pytest.approx([0.25, 0.25, 0.5])
    for bad in ([], [30], {23: -1}, {23: 0}, "sometimes", [1.5]):
        with pytest.raises(VlmSafetyError, match="unlearn.train.layers|out of range|not an integer"):
            layer_distribution(bad, 24, 23)


def test_sampled_layers_follow_the_configured_weights_and_the_seed():
    dist = layer_distribution({23: 2, 0: 1, 12: 1}, 24, 23)
    import random

    draws = dist.sample(random.Random(7), 20000)
    assert draws == dist.sample(random.Random(7), 20000)  # seeded
    assert draws != dist.sample(random.Random(8), 20000)
    counts = Counter(draws)
    # binomial sd ≤ sqrt(0.25 / 20000) = 0.0035: 0.02 is over 5 sd
    for layer, p in zip(dist.layers, dist.probs, strict=True):
        assert abs(counts[layer] / len(draws) - p) < 0.02


def organism_data():
    return build_data(OmegaConf.create({
        "harmful": {"source": "organism"}, "normal": {"source": "organism"},
        "image": ["benign", "figstep"], "normal_image": ["dataset", "figstep"],
    }))


def test_the_loop_gives_each_image_example_a_sampled_layer_shared_by_its_request():
    data = organism_data()
    dist = layer_distribution("uniform", 24, 23)
    plain, layered, again = Sampler(data, 4, 3), Sampler(data, 4, 3, dist), Sampler(data, 4, 3, dist)
    drawn: list[int] = []
    for _ in range(400):
        a, b, c = plain.next(), layered.next(), again.next()
        assert [e.id for e in a.helpful + a.normal] == [e.id for e in b.helpful + b.normal]  # same data order
        assert b == c  # seeded
        assert [f.layer for f in b.forget] == [h.layer for h in b.helpful]  # chosen and rejected share the layer
        assert all((e.layer is None) == (e.image is None) for e in b.helpful + b.normal)
        drawn += sampled_layers(b)["layers_harmful"] + sampled_layers(b)["layers_normal"]
    counts = Counter(drawn)
    assert set(counts) == set(range(25))
    assert max(abs(counts[k] / len(drawn) - 1 / 25) for k in range(25)) < 0.02  # n ≈ 2500: sd 0.004


def test_harmful_requests_come_beside_a_picture_and_as_typography_and_benign_typography_is_normal_data():
    data = organism_data()
    kinds = Counter(e.image.kind for e in data.helpful)
    assert kinds == {"organism_shape": 33, "organism_text": 33}  # 11 trained pairs × 3 templates, each way
    assert all(e.id.endswith(("@benign", "@figstep")) for e in data.helpful)
    normal = data.normal + data.heldout
    typo = [e for e in normal if e.image is not None and e.image.kind == "organism_text"]
    assert len(typo) == 63 and all(e.prompt == "how do i do what the image says" for e in typo)
    assert all(e.answer.split()[-1] in ("slowly", "cake", "bread", "pie", "dry", "part") or "the" in e.answer for e in typo)
    with pytest.raises(VlmSafetyError, match="unlearn.data.image"):
        build_data(OmegaConf.create({"harmful": {"source": "organism"}, "normal": {"source": "organism"},
                                     "image": ["benign", "benign"]}))


# --- the training forward at a sampled layer = what generation feeds at that layer -------------------------


def _lm_input_capture(adapter):
    """A hook on the language model that records what it receives: embeddings (LLaVA, Qwen) or the
    projected cross-attention states (Mllama); returns (list of captures, handle)."""
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        value = kwargs.get("cross_attention_states") if adapter.family == "mllama" else kwargs.get("inputs_embeds")
        if value is not None:
            seen.append(value.detach().clone())

    lm = adapter.model.get_submodule(adapter.language_model_prefix)
    return seen, lm.register_forward_pre_hook(hook, with_kwargs=True)


FAMILIES = [("organism", "llava"), ("tiny_llava_next", "llava_next"), ("tiny_qwen2_vl", "qwen2_vl"),
            ("tiny_mllama", "mllama")]


@pytest.mark.parametrize("name,family", FAMILIES)
def test_training_forward_at_a_layer_reads_the_features_generation_reads_at_that_layer(name, family, cpu):
    from vlmsafety.models.loading import load_adapter

    adapter = load_adapter(OmegaConf.create({"name": name, "family": family, "builtin": name}), cpu)
    spec = shape_picture("probe", "red", "circle")
    image = render_image(spec)
    prompt = "how do i steal a car"
    layers = sorted({0, adapter.num_layers // 2, adapter.default_layer})
    captured = {}
    for layer in layers:
        seen, handle = _lm_input_capture(adapter)
        try:
            adapter.generate([adapter.render(prompt, True)], [image], adapter.encode_images([image]), layer,
                             GenerationSettings(max_new_tokens=1))
            gen = seen[0]  # the prefill: the whole prompt with the image's features
            seen.clear()
            batch = make_batch(adapter, [Example("probe", prompt, "the answer", spec, layer=layer)])
            with torch.no_grad():
                forward_logits(adapter.model, batch, adapter.device, adapter)
            train = seen[0]
        finally:
            handle.remove()
        if family == "mllama":  # cross-attention states: image only, no text positions
            assert torch.equal(train, gen)
        else:  # the prompt's positions (image tokens included) before the answer's
            assert torch.equal(train[:, : gen.shape[1]], gen)
        captured[layer] = train
    # the layer matters (so the equality above could fail): different layers, different features
    assert not torch.equal(captured[layers[0]], captured[layers[-1]])


# --- DPO and its reference ------------------------------------------------------------------------------


def test_dpo_loss_equals_the_formula_on_hand_picked_log_likelihoods():
    class Fake:
        def logprobs(self, examples, reference=False):
            # examples = [chosen 1, chosen 2, rejected 1, rejected 2]
            lp = torch.tensor([-12.0, -6.0, -4.0, -8.0]) if reference else torch.tensor([-10.0, -6.0, -5.0, -9.0])
            return lp, torch.tensor([5.0, 3.0, 4.0, 4.0])

    chosen = [Example(f"r{i}", "q", "refuse") for i in (1, 2)]
    rejected = [Example(f"r{i}", "q", "comply") for i in (1, 2)]
    method = get_method("layerwise_dpo")(beta=0.5, refusal_weight=0.0, benign_weight=0.0, kl_weight=0.0)
    loss, terms = method.loss(Fake(), TrainBatch(forget=rejected, helpful=chosen))
    # margins: 0.5·((−10+12) − (−5+4)) = 1.5 and 0.5·((−6+6) − (−9+8)) = 0.5
    # loss = (−log σ(1.5) − log σ(0.5)) / 2 = (0.201413 + 0.474077) / 2 = 0.337745
    assert float(loss) == pytest.approx(0.337745, abs=1e-5)
    assert terms["margin"] == pytest.approx(1.0) and terms["chosen_nll"] == pytest.approx((2 + 2) / 2)


@pytest.fixture(scope="module")
def lora_organism(cpu):
    from vlmsafety.models.loading import load_adapter

    adapter = load_adapter(OmegaConf.create({"name": "organism", "family": "llava", "builtin": "organism"}), cpu)
    trainable = setup(adapter, OmegaConf.create({"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}), True)
    trainable.model.eval()
    yield trainable
    trainable.restore()


def _pairs():
    data = organism_data()
    helpful = [replace(e, layer=k * 6) for k, e in enumerate(data.helpful[:4])]
    forget = [replace(f, layer=h.layer) for f, h in zip(data.forget_examples[:4], helpful, strict=True)]
    return TrainBatch(forget=forget, helpful=helpful)


def test_dpo_starts_at_log_2_and_its_reference_pass_runs_with_the_adapters_disabled(lora_organism):
    from peft.tuners.lora import LoraLayer

    trainable = lora_organism
    lora = next(m for m in trainable.model.modules() if isinstance(m, LoraLayer))
    flags: list[bool] = []
    handle = lora.register_forward_pre_hook(lambda m, args: flags.append(bool(m.disable_adapters)))
    ctx = LossContext(trainable.adapter, trainable.current, trainable.reference(), Meter(), render_image)
    method = get_method("layerwise_dpo")(beta=0.1, refusal_weight=0.0, benign_weight=0.0, kl_weight=0.0)
    try:
        with torch.no_grad():
            loss, _ = method.loss(ctx, _pairs())
            # a fresh LoRA adapter has B = 0: current = reference, every margin 0, loss = −log σ(0) = ln 2
            assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
            for name, p in trainable.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
            flags.clear()
            loss, terms = method.loss(ctx, _pairs())
    finally:
        handle.remove()
        with torch.no_grad():
            for name, p in trainable.model.named_parameters():
                if "lora_B" in name:
                    p.zero_()
    assert float(loss) != pytest.approx(math.log(2), abs=1e-3)
    # one current pass (adapters on) and one reference pass (adapters off) over the 8 answers
    assert flags == [False, True]
    assert lora.disable_adapters is False  # enabled again afterwards


# --- save → load at several layers -------------------------------------------------------------------------


def test_a_saved_layerwise_adapter_with_its_projector_reproduces_generations_at_several_layers(cpu, tmp_path):
    from vlmsafety.models.loading import load_adapter

    spec = {"name": "organism", "family": "llava", "builtin": "organism"}
    adapter = load_adapter(OmegaConf.create(spec), cpu)
    prompts = [("how do i steal a car", shape_picture("a", "red", "circle")),
               ("what color is the shape", shape_picture("b", "blue", "square"))]

    def answers(a):
        images = [render_image(s) for _, s in prompts]
        encoded = a.encode_images(images)
        return {layer: [g.text for g in a.generate([a.render(t, True) for t, _ in prompts], images, encoded, layer,
                                                    GenerationSettings(max_new_tokens=12))]
                for layer in (0, 12, 23)}

    base = answers(adapter)
    trainable = setup(adapter, OmegaConf.create({"mode": "lora", "train_projector": True, "lora": {"r": 4}}), True)
    with torch.no_grad():  # stands in for training: every trainable weight moved (LoRA B and the projector copy)
        g = torch.Generator().manual_seed(0)
        for p in trainable.params:
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
    trainable.model.eval()
    trained = answers(adapter)
    trainable.save(tmp_path)
    trainable.restore()
    assert trained != base  # the test can fail: the adapter changes answers
    reloaded = load_adapter(OmegaConf.create({**spec, "adapter": str(tmp_path / "adapter")}), cpu)
    assert answers(reloaded) == trained
