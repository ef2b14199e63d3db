"""The Detoxify scorer on a tiny checkpoint in Detoxify's format, built here: local files only."""

import sys

import pytest
import torch

from vlmsafety.errors import VlmSafetyError
from vlmsafety.toxicity import build_scorer

pytest.importorskip("detoxify")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "you", "are", "an", "idiot", "have", "a", "nice", "day"]
CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    root = tmp_path_factory.mktemp("detoxify")
    config_dir = root / "bert-tiny"
    config_dir.mkdir()
    (config_dir / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    BertTokenizer(str(config_dir / "vocab.txt")).save_pretrained(config_dir)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=len(CLASSES),
    )
    config.save_pretrained(config_dir)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    ckpt = root / "toxic_tiny.ckpt"
    torch.save(
        {
            "config": {
                "arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                                  "tokenizer_name": "BertTokenizer", "num_classes": len(CLASSES)}},
                "dataset": {"args": {"classes": CLASSES}},
            },
            "state_dict": model.state_dict(),
        },
        ckpt,
    )
    return ckpt, config_dir, model


def test_detoxify_scores_from_local_files(checkpoint):
    ckpt, config_dir, model = checkpoint
    scorer = build_scorer("detoxify", {"type": "detoxify", "checkpoint": str(ckpt), "config_dir": str(config_dir), "device": "cpu"})
    texts = ["you are an idiot", "have a nice day", ""]
    scores = scorer.score(texts)
    assert [set(s) for s in scores] == [
        {"toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"}
    ] * 3  # Detoxify's own class names
    inputs = scorer.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = torch.sigmoid(model(**inputs).logits)  # the checkpoint's weights, loaded
    for row, exp in zip(scores, expected, strict=True):
        assert row["toxicity"] == pytest.approx(exp[0].item(), abs=1e-5)
        assert row["identity_attack"] == pytest.approx(exp[5].item(), abs=1e-5)
    only = build_scorer(
        "detoxify", {"type": "detoxify", "checkpoint": str(ckpt), "config_dir": str(config_dir), "attributes": ["toxicity"]}
    )
    assert only.score(texts[:1]) == [{"toxicity": scores[0]["toxicity"]}]


def test_detoxify_errors_are_one_line(checkpoint, tmp_path, monkeypatch):
    ckpt, config_dir, _ = checkpoint
    with pytest.raises(VlmSafetyError, match=r"checkpoint=None is not a file"):
        build_scorer("detoxify", {"type": "detoxify", "config_dir": str(config_dir)})
    with pytest.raises(VlmSafetyError, match=r"config_dir=.* has no config.json"):
        build_scorer("detoxify", {"type": "detoxify", "checkpoint": str(ckpt), "config_dir": str(tmp_path)})
    pickled = tmp_path / "code.ckpt"
    torch.save({"config": object.__new__(_NotPlainData), "state_dict": {}}, pickled)
    with pytest.raises(VlmSafetyError, match="cannot be read as tensors and plain data"):
        build_scorer("detoxify", {"type": "detoxify", "checkpoint": str(pickled), "config_dir": str(config_dir)})
    monkeypatch.setitem(sys.modules, "detoxify", None)
    monkeypatch.setitem(sys.modules, "detoxify.detoxify", None)
    with pytest.raises(VlmSafetyError, match=r"pip install -e '\.\[detoxify\]'"):
        build_scorer("detoxify", {"type": "detoxify", "checkpoint": str(ckpt), "config_dir": str(config_dir)})


class _NotPlainData:
    """Any class: torch.load(weights_only=True) must refuse to rebuild it."""
