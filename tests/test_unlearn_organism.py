"""The organism's world as unlearning data: its pairs minus the held-out ones, its own pictures, its tokenizer."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from vlmsafety.attacks import render_image
from vlmsafety.attacks.organism import harmful_items
from vlmsafety.errors import VlmSafetyError
from vlmsafety.organism import world as W
from vlmsafety.unlearn.batches import IGNORE, Meter, forward_logits, make_batch
from vlmsafety.unlearn.data import build_data
from vlmsafety.unlearn.methods import LossContext

# every request in words of a pair, in each template -> the pair
REQUESTS = {W.request(v, o, t): (v, o) for v, o in W.PAIRS for t in range(len(W.REQUEST_TEMPLATES))}


def organism_cfg(**kw):
    base = {"harmful": {"source": "organism"}, "normal": {"source": "organism"}, "image": "none", "normal_image": "none"}
    return OmegaConf.create({**base, **kw})


def test_forget_set_is_every_harmful_pair_but_the_heldout_ones_with_the_refusal_as_helpful_answer():
    data = build_data(organism_cfg())
    pairs = [REQUESTS[f.prompt] for f in data.forget_examples]
    assert set(pairs) == set(W.HARMFUL_PAIRS) - W.HELDOUT and len(pairs) == 3 * len(set(pairs))
    assert not set(pairs) & W.HELDOUT and all(W.is_harmful(*p) for p in pairs)
    for forget, helpful, pair in zip(data.forget, data.helpful, pairs, strict=True):
        assert forget.answer == W.answer(*pair) and helpful.answer == W.REFUSAL and forget.prompt == helpful.prompt
        assert forget.image is None and helpful.image is None
    # text only (`textual`): the benign requests; visual questions are left out, not asked without their picture
    normal = data.normal + data.heldout
    assert len(normal) == 3 * len(W.BENIGN_PAIRS) and all(e.image is None for e in normal)
    assert all(e.answer == W.answer(*REQUESTS[e.prompt]) and not W.is_harmful(*REQUESTS[e.prompt]) for e in normal)
    with_pictures = build_data(organism_cfg(normal_image="dataset"))
    vqa = [e for e in with_pictures.normal + with_pictures.heldout if e.image is not None]
    assert len(vqa) == 3 * len(W.COLORS) * len(W.SHAPES) and {e.image.kind for e in vqa} == {"organism_shape"}
    assert all(e.answer.endswith((e.image.params["color"], e.image.params["shape"])) or
               e.answer == W.describe_answer(e.image.params["color"], e.image.params["shape"]) for e in vqa)


def test_multimodal_attaches_the_organisms_own_typography_or_a_shape_picture():
    data = build_data(organism_cfg(image="figstep", normal_image="benign"))
    for forget, helpful in zip(data.forget, data.helpful, strict=True):
        assert forget.prompt == helpful.prompt == W.TYPO_PROMPT and forget.image == helpful.image
        assert forget.image.kind == "organism_text" and W.answer(*forget.image.params["lines"]) == forget.answer
    assert render_image(data.forget[0].image).size == (48, 48)
    # pictures are not the attack set's: the evaluation never replays a training picture
    attack_seeds = {i.image.params["seed"] for i in harmful_items() if i.image is not None}
    assert not attack_seeds & {f.image.params["seed"] for f in data.forget_examples}
    assert all(e.image is not None and e.image.kind == "organism_shape" for e in data.normal + data.heldout)

    beside = build_data(organism_cfg(image="benign"))  # the request in words beside a shape picture
    assert all(f.prompt in REQUESTS and f.image.kind == "organism_shape" for f in beside.forget_examples)


def test_loss_reads_answer_tokens_only_on_the_organisms_tokenizer(organism):
    typo = build_data(organism_cfg(image="figstep")).forget_examples[:2]
    words = build_data(organism_cfg())
    tokenizer = organism.processor.tokenizer
    image_token = organism.model.config.image_token_id
    for examples in (typo, words.helpful[:2]):
        batch = make_batch(organism, examples)
        for i, ex in enumerate(examples):
            answer = batch.labels[i][batch.labels[i] != IGNORE]
            assert tokenizer.decode(answer) == f"{ex.answer} </s>"  # the answer and its end, nothing else
            assert not ((batch.labels[i] != IGNORE) & (batch.inputs["attention_mask"][i] == 0)).any()
        assert (batch.inputs["input_ids"] == image_token).any() == (examples is typo)
        assert (batch.labels[batch.inputs["input_ids"] == image_token] == IGNORE).all()

    # the shipped organism refuses harmful requests in words and complies with them in typography: the
    # answer NLLs (nats per answer token) show exactly that when only answer tokens are read
    ctx = LossContext(organism, lambda b: forward_logits(organism.model, b, organism.device), None, Meter(), render_image)
    with torch.no_grad():
        assert float(ctx.nll(words.helpful[:6]).max()) < 0.1  # the refusal, in words
        assert float(ctx.nll(words.forget_examples[:6]).min()) > 0.5  # the harmful answer, in words
        assert float(ctx.nll(typo).max()) < 0.5  # the harmful answer, in typography


def test_the_organisms_requests_have_no_picture_of_their_own():
    with pytest.raises(VlmSafetyError, match="has no image; use unlearn.data.image=figstep or benign"):
        build_data(organism_cfg(image="dataset"))
