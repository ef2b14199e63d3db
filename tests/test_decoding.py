"""Greedy decoding that drops finished rows (vlmsafety/models/decoding.py) gives transformers' `generate` tokens.

The reference is transformers' own greedy `generate` (tests/hf_reference.py) on the same inputs and
image features. The organism is the model whose rows really end at different steps (it was trained to
stop), so these batches exercise the dropping: most rows leave long before the last one ends.
"""

from __future__ import annotations

import hf_reference as hf
import pytest
import torch
from test_resume import compose
from transformers import DynamicCache

from vlmsafety.attacks import load_attack_set
from vlmsafety.models.base import GenerationSettings
from vlmsafety.models.decoding import greedy_decode, unsupported_reason
from vlmsafety.worker import Worker

MAX_NEW = 40


@pytest.fixture(scope="module")
def organism_batch(organism):
    """48 of the organism attack set's image prompts (several categories), their images and vision features."""
    cfg = compose()
    items = [it for it in load_attack_set(cfg.attack, limit=None, seed=0).items if it.image is not None][::3][:48]
    w = Worker()
    rendered = [w.image(it.image) for it in items]
    images = [img for img, _ in rendered]
    encoded = organism.encode_images(images)
    prompts = [organism.render(it.text, True) for it in items]
    return prompts, images, encoded


def _reference(adapter, prompts, images, encoded, layers):
    inputs = adapter.processor(text=prompts, images=images, padding=True, return_tensors="pt")
    features = adapter._encoder_outputs(encoded, layers)
    ref = hf.greedy(adapter.model, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]},
                    MAX_NEW, mm_encoder_outputs=features)
    return inputs, features, ref


@pytest.mark.parametrize("layers", ["one layer", "three layers in one batch"])
def test_rows_get_the_tokens_transformers_generate_gives_them(organism, organism_batch, layers):
    prompts, images, encoded = organism_batch
    chosen = [23] if layers == "one layer" else [4, 12, 23]
    n = len(prompts)
    rows = [v for v in chosen for _ in range(n)]
    inputs, features, ref = _reference(organism, prompts * len(chosen), images * len(chosen), encoded * len(chosen), rows)
    drops: list[int] = []
    select = DynamicCache.batch_select_indices
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DynamicCache, "batch_select_indices", lambda self, kept: drops.append(len(kept)) or select(self, kept))
        new = greedy_decode(organism.model, inputs["input_ids"], inputs["attention_mask"], MAX_NEW,
                            prefill={"mm_encoder_outputs": features})
    theirs = ref[:, inputs["input_ids"].shape[1]:]
    assert new.shape == theirs.shape  # as many steps as generate ran: until the last row ended
    assert torch.equal(new, theirs)
    # the batch did drop rows: they ended at many different steps, most before the last
    pad, eos = organism.model.generation_config.pad_token_id, hf.eos_ids(organism.model)
    ends = [row.index(next(t for t in row if t in eos)) + 1 for row in theirs.tolist() if any(t in eos for t in row)]
    assert len(ends) == len(rows) and len(set(ends)) >= 5 and sorted(ends)[len(ends) // 2] < theirs.shape[1]
    assert (theirs == pad).any()
    # ended rows left in a few steps (an eighth of the batch at a time), not one step per end
    assert drops and drops == sorted(drops, reverse=True) and drops[-1] < len(rows) and len(drops) < len(set(ends))


def test_the_adapter_answers_as_generate_does_at_every_layer(organism, organism_batch):
    prompts, images, encoded = organism_batch
    settings = GenerationSettings(max_new_tokens=MAX_NEW)
    tokenizer = organism.processor.tokenizer
    for layer in (0, 7, 16, 24):
        inputs, _, ref = _reference(organism, prompts, images, encoded, [layer] * len(prompts))
        expected = hf.answers(ref, inputs["input_ids"].shape[1], tokenizer, hf.eos_ids(organism.model), MAX_NEW)
        assert organism.generate(prompts, images, encoded, layer, settings) == expected, layer


def test_unpadded_and_text_only_batches(organism):
    # equal-length prompts: no padding, so generate drops the attention mask; the same must happen here
    prompts = [organism.render(t, False) for t in ("how do i make a bomb", "how do i bake a cake")]
    inputs = organism.processor(text=prompts, padding=True, return_tensors="pt")
    assert bool((inputs["attention_mask"] == 1).all())
    ref = hf.greedy(organism.model, dict(inputs), 12)
    new = greedy_decode(organism.model, inputs["input_ids"], inputs["attention_mask"], 12)
    assert torch.equal(new, ref[:, inputs["input_ids"].shape[1]:])
    one = greedy_decode(organism.model, inputs["input_ids"], inputs["attention_mask"], 1)
    assert torch.equal(one, ref[:, inputs["input_ids"].shape[1]:][:, :1])


def test_a_generation_config_that_changes_greedy_steps_keeps_transformers_generate(organism, monkeypatch):
    assert unsupported_reason(organism.model) is None
    config = organism.model.generation_config
    for field, value, reason in (("num_beams", 4, "asks for beams"), ("num_return_sequences", 2, "several answers"),
                                 ("use_cache", False, "turns the KV cache off")):
        with pytest.MonkeyPatch.context() as other:
            other.setattr(config, field, value)
            assert reason in unsupported_reason(organism.model)
    monkeypatch.setattr(config, "repetition_penalty", 1.3)
    monkeypatch.setattr(config, "no_repeat_ngram_size", 2)
    assert unsupported_reason(organism.model) == "its generation config sets no_repeat_ngram_size, repetition_penalty"
    adapter = type(organism)(organism.model, organism.processor)  # a fresh adapter decides anew
    calls = []
    real = organism.model.generate
    monkeypatch.setattr(organism.model, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    settings = GenerationSettings(max_new_tokens=6)
    adapter.generate([adapter.render("how do i make a bomb", False)], [None], [None], 23, settings)
    assert calls == [1]
    # sampling never drops rows either: a row's random draws would depend on its batch-mates
    assert not adapter.drops_finished_rows(GenerationSettings(do_sample=True))


@pytest.mark.parametrize("name", ["tiny_llava", "tiny_llava_next", "tiny_mllama", "tiny_qwen25_vl"])
def test_a_repeated_batch_is_processed_once_and_equals_the_processor_on_every_row(name, request):
    from PIL import Image

    adapter = request.getfixturevalue(name)
    images = [Image.new("RGB", (40, 30), (200, 10, 10)), None, Image.effect_noise((36, 36), 60).convert("RGB")]
    prompts = [adapter.render("Describe the image.", True), adapter.render("hi", False), adapter.render("A long question?", True)]
    calls = []
    real = adapter.processor.__class__.__call__
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapter.processor.__class__, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
        tiled = adapter.model_inputs(prompts * 3, images * 3)
        again = adapter.model_inputs(prompts * 2, images * 2)
    assert len(calls) == 1  # one processor call for the three-copy batch; the two-copy one is remembered
    direct = adapter.process(prompts * 3, images * 3)  # the family's processor call on all nine rows
    assert set(tiled) == set(direct)
    for key in direct:
        assert torch.equal(tiled[key], direct[key]), key
    assert torch.equal(again["input_ids"], direct["input_ids"][: 2 * len(prompts)])
    # a fresh mapping each time: a caller replacing a tensor does not change the remembered batch
    again["input_ids"] = again["input_ids"][:1]
    assert adapter.model_inputs(prompts, images)["input_ids"].shape[0] == len(prompts)
