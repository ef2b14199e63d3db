"""A Git LFS pointer in place of a user's file is one line saying `git lfs pull`, wherever the file is read.

Attack tables and their images: tests/test_attack_rows.py (every upstream format). Here: the pointer
test itself, and the other readers (image files, fonts, unlearning data, model and adapter folders,
Detoxify's files).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import REPO
from omegaconf import OmegaConf
from PIL import Image

from vlmsafety.attacks import ImageSpec, render_image
from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import is_lfs_pointer

# The example pointer of git-lfs `docs/spec.md`.
SPEC_EXAMPLE = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)


def pointer_to(path: Path) -> None:
    """Replace the file at `path` with its Git LFS pointer, as a clone without git-lfs has it."""
    data = path.read_bytes() if path.exists() else b"x"
    oid = hashlib.sha256(data).hexdigest()
    path.write_bytes(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode())


def assert_lfs_line(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path} is a Git LFS pointer") and "git lfs pull" in message


def test_pointer_recognition():
    assert is_lfs_pointer(SPEC_EXAMPLE)
    assert is_lfs_pointer(SPEC_EXAMPLE.replace(b"git-lfs.github.com", b"hawser.github.com"))  # pre-1.0 clients
    assert not is_lfs_pointer(b"goal,target\nversion https://git-lfs.github.com/spec/v1,x\n")  # data that mentions it
    assert not is_lfs_pointer(b"version https://git-lfs.github.com/spec/v1\nsize 3\n")  # no oid
    assert not is_lfs_pointer(SPEC_EXAMPLE + b"#" * 1024)  # over 1 KiB: data, whatever its first line
    assert not is_lfs_pointer(b"")


def test_image_file(tmp_path):
    path = tmp_path / "scene.png"
    Image.new("RGB", (4, 4)).save(path)
    pointer_to(path)
    with pytest.raises(VlmSafetyError) as err:
        render_image(ImageSpec("file", {"path": str(path)}))
    assert_lfs_line(err, path)


@pytest.mark.parametrize("kind, params", [("figstep", {"instruction": "Steps to x."}), ("typo", {"text": "x"})])
def test_user_font(tmp_path, kind, params):
    path = tmp_path / "Font.ttf"
    shutil.copy(REPO / "vlmsafety" / "assets" / "fonts" / "FreeMonoBold.ttf", path)
    pointer_to(path)
    with pytest.raises(VlmSafetyError) as err:
        render_image(ImageSpec(kind, {**params, "font": str(path)}))
    assert_lfs_line(err, path)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_unlearning_data_file(tmp_path, suffix):
    from vlmsafety.unlearn.data import build_data

    path = tmp_path / f"train{suffix}"
    pointer_to(path)
    # VLGuard's train.json as normal data; PKU-SafeRLHF's train.jsonl as harmful data
    sources = {"harmful": {"source": "builtin"}, "normal": {"source": "builtin"}}
    if suffix == ".json":
        sources["normal"] = {"source": "vlguard", "path": str(path)}
    else:
        sources["harmful"] = {"source": "pku_saferlhf", "path": str(path)}
    cfg = OmegaConf.create({**sources, "image": "none", "normal_image": "none"})
    with pytest.raises(VlmSafetyError) as err:
        build_data(cfg)
    assert_lfs_line(err, path)


@pytest.mark.parametrize("pointer", ["model.safetensors", "config.json"])
def test_model_folder_cloned_without_lfs(tmp_path, pointer):
    from vlmsafety.models.source import resolve_source

    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 2048)
    pointer_to(tmp_path / pointer)
    with pytest.raises(VlmSafetyError) as err:
        resolve_source(OmegaConf.create({"name": "cloned", "path": str(tmp_path)}))
    assert_lfs_line(err, tmp_path / pointer)


@pytest.mark.parametrize("pointer", ["adapter_model.safetensors", "adapter_config.json"])
def test_adapter_folder_cloned_without_lfs(tmp_path, pointer, cpu, monkeypatch):
    """`model.adapter` (a LoRA folder): the one-line LFS error, before anything of the base model is read."""
    from vlmsafety.models import loading

    def too_late(*args, **kwargs):
        raise AssertionError("the base model was read before the adapter folder was checked")

    monkeypatch.setattr(loading.AutoConfig, "from_pretrained", too_late)

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 2048)
    pointer_to(adapter / pointer)
    spec = OmegaConf.create({"name": "tiny_llava", "family": "llava", "builtin": "tiny_llava", "adapter": str(adapter)})
    with pytest.raises(VlmSafetyError) as err:
        loading.load_adapter(spec, cpu)
    assert_lfs_line(err, adapter / pointer)
    with pytest.raises(VlmSafetyError) as err:
        loading.attach_adapter(None, str(adapter))  # the attaching step checks too, whoever calls it
    assert_lfs_line(err, adapter / pointer)


@pytest.mark.parametrize("pointer", ["toxic.ckpt", "config/config.json", "config/vocab.txt"])
def test_detoxify_files_cloned_without_lfs(tmp_path, pointer):
    """toxicity=[detoxify]: its checkpoint and the base model's folder (often a hub clone) are user files too."""
    pytest.importorskip("detoxify")
    from vlmsafety.toxicity import build_scorer

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "config" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tmp_path / "toxic.ckpt").write_bytes(b"\0" * 2048)
    pointer_to(tmp_path / pointer)
    cfg = {"type": "detoxify", "checkpoint": str(tmp_path / "toxic.ckpt"), "config_dir": str(tmp_path / "config")}
    with pytest.raises(VlmSafetyError) as err:
        build_scorer("detoxify", cfg)
    assert_lfs_line(err, tmp_path / pointer)
