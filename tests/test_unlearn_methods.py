"""Each method's loss on a fixed tiny batch equals the value computed by hand, one example at a time."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from vlmsafety.attacks import render_image
from vlmsafety.unlearn.batches import IGNORE, Meter, make_batch
from vlmsafety.unlearn.data import build_data
from vlmsafety.unlearn.methods import LossContext, TrainBatch, get_method
from vlmsafety.unlearn.model_setup import setup


@pytest.fixture(scope="module")
def lora_llava(cpu):
    """A fresh tiny_llava with LoRA adapters whose B matrices are random (so current ≠ reference)."""
    from vlmsafety.models.loading import load_adapter

    adapter = load_adapter(OmegaConf.create({"name": "tiny_llava", "family": "llava", "builtin": "tiny_llava"}), cpu)
    trainable = setup(adapter, OmegaConf.create({"mode": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}), True)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in trainable.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    trainable.model.eval()
    yield trainable
    trainable.restore()


@pytest.fixture(scope="module")
def tiny_batch():
    data = build_data(OmegaConf.create({
        "harmful": {"source": "builtin", "categories": ["fraud"]}, "normal": {"source": "builtin"},
        "image": "benign", "normal_image": "none",
    }))
    with_images = TrainBatch(forget=data.forget_examples[:2], helpful=data.helpful[:2], normal=data.normal[:2])
    text = TrainBatch(
        forget=[_text(e) for e in with_images.forget], helpful=[_text(e) for e in with_images.helpful], normal=with_images.normal
    )
    return {"text": text, "images": with_images}


def _text(example):
    from dataclasses import replace

    return replace(example, image=None)


def hand_logits(model, adapter, example):
    """Logits at the answer positions of ONE example, and its answer ids, built without the batching code."""
    image = render_image(example.image) if example.image else None
    enc = adapter.model_inputs([adapter.render(example.prompt, image is not None)], [image])
    tokenizer = adapter.processor.tokenizer
    answer = tokenizer(adapter.render_answer(example.prompt, image is not None, example.answer), add_special_tokens=False)["input_ids"]
    ids = torch.cat([enc["input_ids"][0], torch.tensor(answer)])[None]
    kwargs = {"pixel_values": enc["pixel_values"]} if image is not None else {}
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits[0].float()
    p = enc["input_ids"].shape[1]
    return logits[p - 1 : p - 1 + len(answer)], torch.tensor(answer)


def hand_values(trainable, example):
    """(log p(answer) under current, under reference, answer length, mean KL(ref ‖ current)) of one example."""
    with torch.no_grad():
        cur, answer = hand_logits(trainable.model, trainable.adapter, example)
        with trainable.model.disable_adapter():
            ref, _ = hand_logits(trainable.model, trainable.adapter, example)
    lp_cur, lp_ref = torch.log_softmax(cur, -1), torch.log_softmax(ref, -1)
    rows = torch.arange(len(answer))
    kl = (lp_ref.exp() * (lp_ref - lp_cur)).sum(-1).mean()
    return float(lp_cur[rows, answer].sum()), float(lp_ref[rows, answer].sum()), len(answer), float(kl)


def expected_loss(method, batch, trainable, cap):
    f = [hand_values(trainable, e) for e in batch.forget]
    h = [hand_values(trainable, e) for e in batch.helpful]
    n = [hand_values(trainable, e) for e in batch.normal]
    nll = lambda v: -v[0] / v[2]  # noqa: E731
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    forget_capped = mean([min(nll(v), cap) for v in f])
    if method == "textual" or method == "multimodal":
        return -0.5 * forget_capped + mean([nll(v) for v in h]) + mean([v[3] for v in n])
    if method == "textual_ga":
        return -forget_capped
    if method == "textual_graddiff":
        return -forget_capped + mean([nll(v) for v in n])
    assert method == "textual_npo"
    beta = 0.1
    npo = mean([-(2 / beta) * math.log(1 / (1 + math.exp(beta * (v[0] - v[1])))) for v in f])  # log σ(−β·Δ)
    return npo + mean([nll(v) for v in n])


@pytest.mark.parametrize("method", ["textual", "textual_ga", "textual_graddiff", "textual_npo", "multimodal"])
def test_loss_matches_hand_computation(method, lora_llava, tiny_batch):
    batch = tiny_batch["images" if method == "multimodal" else "text"]
    nlls = sorted(-v[0] / v[2] for v in (hand_values(lora_llava, e) for e in batch.forget))
    cap = (nlls[0] + nlls[1]) / 2  # one forget example above the cap: the clamp must show
    ctx = LossContext(lora_llava.adapter, lora_llava.current, lora_llava.reference(), Meter(), render_image, cap)
    options = {"textual_npo": {"beta": 0.1, "forget_weight": 1.0, "retain_weight": 1.0}}.get(method, {})
    with torch.no_grad():
        loss, terms = get_method(method)(**options).loss(ctx, batch)
    assert float(loss) == pytest.approx(expected_loss(method, batch, lora_llava, cap), rel=1e-4, abs=1e-5)
    assert terms["forget_nll"] == pytest.approx(sum(nlls) / 2, rel=1e-4)  # logged uncapped
    if method == "multimodal":
        assert ctx.meter.images == 2 + 2  # forget and helpful passes, each with its two images


def test_npo_formula_on_numbers():
    """NPO = −(2/β)·E[log σ(−β·(log p_θ − log p_ref))] on hand-picked log-likelihoods."""

    class Fake:
        def logprobs(self, examples, reference=False):
            # (summed log-likelihood, answer tokens) per forget example
            return (torch.tensor([-8.0, -12.0]), torch.tensor([4.0, 3.0])) if reference else (
                torch.tensor([-10.0, -9.0]), torch.tensor([4.0, 3.0]))

        def nll(self, examples):
            return torch.zeros(0)

    loss, terms = get_method("textual_npo")(beta=0.1, retain_weight=0.0).loss(Fake(), TrainBatch(forget=[None, None]))
    # Δ = log p_θ − log p_ref = −2 and +3 (asymmetric, so flipping Δ's sign changes the value):
    # −(2/0.1)·(log σ(0.2) + log σ(−0.3))/2 = −10·(−0.598139 − 0.854355) = 14.52494
    # (with the sign flipped: −10·(log σ(−0.2) + log σ(0.3)) = −10·(−0.798139 − 0.554355) = 13.52494)
    assert float(loss) == pytest.approx(14.52494, abs=1e-4)
    # forget_nll = mean of per-token NLL: (10/4 + 9/3) / 2 = 2.75
    assert terms["npo"] == pytest.approx(14.52494, abs=1e-4) and terms["forget_nll"] == pytest.approx(2.75)


def test_batches_put_the_loss_on_answer_tokens_only(tiny_llava):
    data = build_data(OmegaConf.create({"harmful": {"source": "builtin"}, "normal": {"source": "builtin"}}))
    examples = data.helpful[:3]
    batch = make_batch(tiny_llava, examples)
    tokenizer = tiny_llava.processor.tokenizer
    for row, ex in enumerate(examples):
        answer = tokenizer(tiny_llava.render_answer(ex.prompt, False, ex.answer), add_special_tokens=False)["input_ids"]
        labelled = batch.labels[row][batch.labels[row] != IGNORE].tolist()
        assert labelled == answer and answer[-1] == tokenizer.eos_token_id  # the answer, then end of turn
        assert tokenizer.decode(labelled, skip_special_tokens=True).strip() == ex.answer
        # every labelled position is attended; padding is not
        assert bool(batch.inputs["attention_mask"][row][batch.labels[row] != IGNORE].all())
    assert int(batch.inputs["attention_mask"].sum()) < batch.inputs["attention_mask"].numel()  # some padding exists
