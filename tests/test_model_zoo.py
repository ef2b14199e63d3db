"""The real checkpoints' configs: YAML ⇄ shipped config.json, task=inspect, offline behaviour — all without weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from omegaconf import OmegaConf

from vlmsafety.errors import VlmSafetyError
from vlmsafety.models import get_family
from vlmsafety.models import source as source_mod
from vlmsafety.models.facts import check_config, parse_config, weight_budget
from vlmsafety.models.source import CONFIGS_DIR, ensure_hub_checkpoint, local_config

MODEL_DIR = REPO / "conf" / "model"
# name: (hub id, family, N, default, parameters as published on the model card)
REAL = {
    "llava15_7b": ("llava-hf/llava-1.5-7b-hf", "llava", 24, 23, 7.06e9),
    "llava15_13b": ("llava-hf/llava-1.5-13b-hf", "llava", 24, 23, 13.4e9),
    "llava_next_mistral_7b": ("llava-hf/llava-v1.6-mistral-7b-hf", "llava_next", 24, 23, 7.57e9),
    "llama32_11b_vision": ("meta-llama/Llama-3.2-11B-Vision-Instruct", "mllama", 32, 32, 10.7e9),
    "qwen25vl_7b": ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 32, 32, 8.29e9),
}


def _spec(name: str):
    return OmegaConf.load(MODEL_DIR / f"{name}.yaml")


@pytest.mark.parametrize("name", list(REAL))
def test_every_real_yaml_matches_its_shipped_config(name):
    hub_id, family_name, n, default, params = REAL[name]
    spec = _spec(name)
    assert (spec.name, spec.id, spec.family, spec.builtin, spec.quant) == (name, hub_id, family_name, None, "4bit")
    assert set(OmegaConf.load(MODEL_DIR / "tiny_llava.yaml")) <= set(spec)  # the same keys as the built-in models
    family = get_family(spec.family)
    config = parse_config(json.loads((CONFIGS_DIR / spec.config_json).read_text()))
    check_config(spec, family, config, where=spec.config_json)  # raises on any mismatch
    assert family.layer_range(config) == (spec.vision_layers, spec.default_layer) == (n, default)
    # the shipped config really describes the published model: its parameter count matches the card
    budget = weight_budget(family.model_class, config, list(family.quant_skip_modules))
    assert budget.total_params == pytest.approx(params, rel=0.01)
    assert budget.nf4_bytes < budget.bf16_bytes / 2


def test_a_wrong_declaration_or_family_is_one_line():
    spec = _spec("llava15_7b")
    config = parse_config(json.loads((CONFIGS_DIR / spec.config_json).read_text()))
    wrong = OmegaConf.merge(spec, {"vision_layers": 23})
    with pytest.raises(VlmSafetyError, match=r"declares vision_layers=23 but cfg.json gives 24; fix conf/model/llava15_7b.yaml"):
        check_config(wrong, get_family("llava"), config, where="cfg.json")
    with pytest.raises(VlmSafetyError, match=r"is family 'mllama' \(mllama\) but cfg.json describes a 'llava' checkpoint"):
        check_config(OmegaConf.merge(spec, {"family": "mllama"}), get_family("mllama"), config, where="cfg.json")


def test_inspect_config_falls_back_to_the_shipped_one(monkeypatch):
    monkeypatch.setattr(source_mod, "try_to_load_from_cache", lambda *a, **k: None)  # nothing in the HF cache
    raw, where = local_config(_spec("qwen25vl_7b"))
    assert raw["model_type"] == "qwen2_5_vl" and where.startswith("project config qwen25vl_7b.json")
    with pytest.raises(VlmSafetyError, match="no config.json for model 'x' on this machine"):
        local_config(OmegaConf.create({"name": "x", "id": "org/model"}))


def test_unreachable_hub_is_one_line_without_retries(monkeypatch):
    monkeypatch.setattr(source_mod.hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(source_mod, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(source_mod, "hf_hub_url", lambda *a, **k: "http://127.0.0.1:9/config.json")  # nothing listens
    with pytest.raises(VlmSafetyError) as e:
        ensure_hub_checkpoint(_spec("llava15_7b"))
    msg = str(e.value)
    assert "the hub is out of reach" in msg and "`hf download llava-hf/llava-1.5-7b-hf`" in msg and "model.path=" in msg


def test_a_path_without_a_checkpoint_is_one_line(tmp_path):
    from vlmsafety.models.source import resolve_source

    with pytest.raises(VlmSafetyError, match=f"model.path={tmp_path} has no config.json.*hf download llava-hf"):
        resolve_source(OmegaConf.merge(_spec("llava15_7b"), {"path": str(tmp_path)}))


# --- through run.py, as a user types it ---------------------------------------------------------
def run_cli(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf_home"), "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), f"hydra.run.dir={tmp / 'run'}", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_offline_missing_checkpoint_is_one_instruction_line(tmp_path):
    p = run_cli("model=llava15_7b", tmp=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if "llava-hf/llava-1.5-7b-hf" in line]
    assert len(lines) == 1, p.stderr[-2000:]
    assert "HF_HUB_OFFLINE" in lines[0] and "`hf download llava-hf/llava-1.5-7b-hf`" in lines[0]
    assert "model.path=" in lines[0]


@pytest.mark.slow
def test_inspect_works_offline_from_the_shipped_config(tmp_path):
    p = run_cli("model=llama32_11b_vision", "task=inspect", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "project config llama32_11b_vision.json" in p.stderr
    assert "S[min(i, L)]" in p.stderr  # the Mllama slot rule, printed as text (not eaten as markup)
    facts = json.loads((tmp_path / "run" / "inspect.json").read_text())
    assert (facts["vision_layers"], facts["default_layer"], facts["vision_width"]) == (32, 32, 1280)
    assert facts["params"] == pytest.approx(10.7e9, rel=0.01)
    assert facts["weights_nf4_bytes"] < facts["weights_bf16_bytes"] / 2


@pytest.mark.slow
def test_cfg_job_prints_the_resolved_real_model(tmp_path):
    p = run_cli("model=llava15_7b", "--cfg", "job", tmp=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "id: llava-hf/llava-1.5-7b-hf" in p.stdout and "quant: 4bit" in p.stdout and "vision_layers: 24" in p.stdout


def test_layer_out_of_range_is_refused_before_any_loading(tmp_path, monkeypatch):
    """`python run.py model=llava15_7b layer=40`, composed in-process (the CLI path costs a subprocess)."""
    from hydra import compose, initialize_config_dir

    from vlmsafety.tasks.eval import run_eval

    monkeypatch.setattr("vlmsafety.worker.Worker.model", lambda *a, **k: pytest.fail("tried to load the model"))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=llava15_7b", "layer=40"])
    with pytest.raises(VlmSafetyError, match=r"layer 40 is out of range: llava15_7b has 24 vision blocks, so valid layers are 0\.\.24"):
        run_eval(cfg, tmp_path)


# --- dtype: auto = the checkpoint's own ----------------------------------------------------------
def test_auto_dtype_keeps_a_float16_checkpoint_in_float16_on_cuda_and_uses_float32_on_cpu(tmp_path, cpu):
    """A tiny checkpoint saved in float16 (as the LLaVA releases are): `auto` resolves to float16 for CUDA.

    CUDA is not here, so the resolution CUDA uses is called with a CUDA device; the CPU load runs for real.
    """
    import shutil

    import torch
    from transformers import AutoConfig, LlavaForConditionalGeneration

    from vlmsafety.models.builtin import ensure_builtin
    from vlmsafety.models.loading import load_adapter, resolve_dtype

    folder = tmp_path / "fp16"
    shutil.copytree(ensure_builtin("tiny_llava"), folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float16)
    model.save_pretrained(folder)  # weights and config.json's dtype: float16
    config = AutoConfig.from_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float16"
    assert resolve_dtype("auto", torch.device("cuda"), config) == torch.float16
    assert resolve_dtype("auto", torch.device("cpu"), config) == torch.float32  # the documented CPU rule
    assert resolve_dtype("bfloat16", torch.device("cuda"), config) == torch.bfloat16  # an explicit dtype wins
    spec = OmegaConf.create({"name": "fp16", "family": "llava", "path": str(folder), "dtype": "auto"})
    assert load_adapter(spec, cpu).model.dtype == torch.float32


# dtype of each release's weights as its published config.json records it (top-level torch_dtype;
# sources and revisions in vlmsafety/models/configs/README.md; llava15_13b's is not verified: the 7B sibling's)
PUBLISHED_DTYPE = {
    "llava15_7b": "float16", "llava15_13b": "float16", "llava_next_mistral_7b": "float16",
    "llama32_11b_vision": "bfloat16", "qwen25vl_7b": "bfloat16",
}


@pytest.mark.parametrize("name", list(REAL))
def test_auto_dtype_of_every_zoo_model_is_its_release_dtype_on_cuda(name):
    import torch

    from vlmsafety.models.loading import resolve_dtype

    config = parse_config(json.loads((CONFIGS_DIR / _spec(name).config_json).read_text()))
    expected = {"float16": torch.float16, "bfloat16": torch.bfloat16}[PUBLISHED_DTYPE[name]]
    assert resolve_dtype(str(_spec(name).dtype), torch.device("cuda"), config) == expected


# --- shipped configs against the published config.json ------------------------------------------
# Copies of the published files (sources in each file's _copy_of and in vlmsafety/models/configs/README.md).
PUBLISHED = REPO / "tests" / "fixtures" / "published_configs"
COMPLETE = ["llava15_7b", "llava_next_mistral_7b", "qwen25vl_7b"]  # whole files: every field compared
PARTIAL = ["llama32_11b_vision"]  # secondary copies of some fields: those compared, the rest not verified
NOT_VERIFIED = ["llava15_13b"]  # no copy of its config.json could be read here
_METADATA = {"transformers_version", "_name_or_path"}  # provenance, not architecture


def _flat(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if key in _METADATA or key.startswith("_"):
            continue
        if isinstance(value, dict) and key.endswith("_config"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _published(name: str) -> dict:
    return json.loads((PUBLISHED / f"{name}.json").read_text())


def test_every_shipped_config_is_checked_or_declared_unverified():
    assert sorted(COMPLETE + PARTIAL + NOT_VERIFIED) == sorted(p.stem for p in CONFIGS_DIR.glob("*.json"))


@pytest.mark.parametrize("name", COMPLETE)
def test_shipped_config_is_the_published_one_field_for_field(name):
    """Both files through transformers' config class, so a field one omits is compared at the class default."""
    theirs = _flat(parse_config(_published(name)).to_dict())
    ours = _flat(parse_config(json.loads((CONFIGS_DIR / f"{name}.json").read_text())).to_dict())
    missing = object()
    diff = {k: (theirs.get(k, "<absent>"), ours.get(k, "<absent>"))
            for k in theirs.keys() | ours.keys() if theirs.get(k, missing) != ours.get(k, missing)}
    assert diff == {}, f"{name}: published vs shipped {diff}"


@pytest.mark.parametrize("name", PARTIAL)
def test_shipped_config_has_every_field_the_copies_show(name):
    theirs = _flat(_published(name))
    ours = _flat(json.loads((CONFIGS_DIR / f"{name}.json").read_text()))
    assert {k: (v, ours.get(k, "<absent>")) for k, v in theirs.items() if ours.get(k) != v} == {}
