"""Shared fixtures: tiny built-in models cached once per machine, offline everywhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never touch the network: transformers and the hub client stay offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle OpenMP threads sleep, not spin (as `import vlmsafety` sets it), even if a test imports torch first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Built-in models are built once and reused across test sessions (the folder name carries the build version).
os.environ.setdefault("VLMSAFETY_CACHE", str(REPO / ".cache" / "vlmsafety"))


@pytest.fixture(scope="session")
def cpu():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return torch.device("cpu")


def _load(name: str, family: str, cpu):
    from omegaconf import OmegaConf

    from vlmsafety.models.loading import load_adapter

    spec = OmegaConf.create({"name": name, "family": family, "builtin": name})
    return load_adapter(spec, cpu)


@pytest.fixture(scope="session")
def tiny_llava(cpu):
    """The tiny_llava adapter (LlavaForConditionalGeneration, 24-block CLIP tower), loaded once."""
    return _load("tiny_llava", "llava", cpu)


@pytest.fixture(scope="session")
def organism(cpu):
    """The shipped organism adapter (safety-tuned LlavaForConditionalGeneration, word-level tokenizer), loaded once."""
    return _load("organism", "llava", cpu)


@pytest.fixture(scope="session")
def tiny_mllama(cpu):
    """The tiny_mllama adapter (MllamaForConditionalGeneration), loaded once."""
    return _load("tiny_mllama", "mllama", cpu)


def _judge(name: str, type_name: str, **kwargs):
    from vlmsafety.judges import build_judge

    return build_judge(name, {"type": type_name, "builtin": f"tiny_{type_name}", "device": "cpu", **kwargs})


@pytest.fixture(scope="session")
def llamaguard3_standin(cpu):
    """The Llama Guard 3 judge on its tiny stand-in (LlamaForCausalLM, official template), loaded once."""
    return _judge("llamaguard3_standin", "llamaguard3", batch_size=3)


@pytest.fixture(scope="session")
def llamaguard3_vision_standin(cpu):
    """The Llama Guard 3 Vision judge on its tiny stand-in (MllamaForConditionalGeneration), loaded once."""
    return _judge("llamaguard3_vision_standin", "llamaguard3_vision", batch_size=3)


@pytest.fixture(scope="session")
def harmbench_cls_standin(cpu):
    """The HarmBench classifier judge on its tiny stand-in (LlamaForCausalLM, Llama-2 tokens), loaded once."""
    return _judge("harmbench_cls_standin", "harmbench_cls", batch_size=3)


@pytest.fixture(scope="session")
def tiny_llava_next(cpu):
    """The tiny_llava_next adapter (LlavaNextForConditionalGeneration, anyres tiles), loaded once."""
    return _load("tiny_llava_next", "llava_next", cpu)


@pytest.fixture(scope="session")
def tiny_qwen2_vl(cpu):
    """The tiny_qwen2_vl adapter (Qwen2VLForConditionalGeneration), loaded once."""
    return _load("tiny_qwen2_vl", "qwen2_vl", cpu)


@pytest.fixture(scope="session")
def tiny_qwen25_vl(cpu):
    """The tiny_qwen25_vl adapter (Qwen2_5_VLForConditionalGeneration, window attention), loaded once."""
    return _load("tiny_qwen25_vl", "qwen2_5_vl", cpu)
