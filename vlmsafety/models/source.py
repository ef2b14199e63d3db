"""Where a model's files come from: `model.path`, a built-in recipe, or a hub id — and what to say when they are missing.

A hub checkpoint that is not in the local Hugging Face cache is fetched only when the hub is
reachable; offline (`HF_HUB_OFFLINE=1`) or without network, the user gets one line naming the
command that downloads it and the `model.path` alternative, after at most one bounded wait.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

from vlmsafety.errors import VlmSafetyError
from vlmsafety.lfs import check_not_lfs_pointer
from vlmsafety.models.builtin import ensure_builtin

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"  # project-written config.json per real checkpoint
HUB_TIMEOUT_S = 10.0  # the one network wait before a missing checkpoint is reported


def resolve_source(spec: Any, key: str = "model") -> str:
    """Where to load from: `<key>.path` if set, else the built-in recipe, else the hub id (cached or fetched).

    `key` is the config node the spec came from (`model`, `judge.llamaguard3`), for the error lines.
    """
    if spec.get("path"):
        path = Path(str(spec.path)).expanduser()
        if not (path / "config.json").is_file():
            raise VlmSafetyError(
                f"{key}.path={spec.path} has no config.json; point it at a save_pretrained folder "
                f"(for {spec.get('name')!r}: {_fetch_hint(spec, key)})"
            )
        # A checkpoint cloned without git-lfs holds pointers in place of its weights and tokenizer.
        for file in sorted(path.iterdir()):
            if file.is_file():
                check_not_lfs_pointer(file)
        return str(path)
    if spec.get("builtin"):
        return str(ensure_builtin(spec.builtin))
    if spec.get("id"):
        ensure_hub_checkpoint(spec, key)
        return str(spec.id)
    raise VlmSafetyError(f"{key} {spec.get('name')!r} sets none of {key}.path, {key}.builtin or {key}.id")


def ensure_hub_checkpoint(spec: Any, key: str = "model") -> None:
    """Return if the checkpoint is in the local cache or the hub can serve it; else one line on how to get it.

    The probe is one HEAD request without retries (huggingface_hub's downloads retry with backoff
    for about 25 s), so an unreachable hub costs at most `HUB_TIMEOUT_S`.
    """
    repo, revision = str(spec.id), spec.get("revision")
    if isinstance(try_to_load_from_cache(repo, "config.json", revision=revision), str):
        return
    if hub_constants.HF_HUB_OFFLINE:
        raise VlmSafetyError(
            f"{repo} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {_fetch_hint(spec, key)}"
        )
    try:
        get_hf_file_metadata(hf_hub_url(repo, "config.json", revision=revision), timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise VlmSafetyError(
            f"{repo} is gated: accept its license on https://huggingface.co/{repo}, run `hf auth login`, then retry "
            f"(or set {key}.path=/path/to/a/local/copy)"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise VlmSafetyError(f"{repo} (revision {revision or 'main'}) is not on the hub ({type(e).__name__}); fix {key}.id / {key}.revision") from None
    except Exception as e:  # connection refused, DNS, timeout, proxy: the hub is out of reach
        raise VlmSafetyError(
            f"{repo} is not in the local Hugging Face cache and the hub is out of reach ({type(e).__name__}): "
            f"{_fetch_hint(spec, key)}"
        ) from None


def missing_files_error(spec: Any, source: str, error: Exception) -> VlmSafetyError:
    """One line for a checkpoint whose folder or cache lacks files `from_pretrained` needs."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return VlmSafetyError(f"could not load {spec.get('name')!r} from {source}: {first} ({_fetch_hint(spec)})")


def _fetch_hint(spec: Any, key: str = "model") -> str:
    """How to get the checkpoint: the download command for a hub id, else `<key>.path`."""
    repo = spec.get("id")
    # a judge is one of several: the run can go on without it (the keyword judge needs no checkpoint)
    instead = ", or judge without it: judge=[keyword]" if key.startswith("judge.") else ""
    if not repo:
        return f"set {key}.path=/path/to/checkpoint{instead}"
    revision = f" --revision {spec.revision}" if spec.get("revision") else ""
    return (
        f"download it with `hf download {repo}{revision}` (huggingface_hub's CLI; formerly "
        f"`huggingface-cli download {repo}{revision}`), or set {key}.path=/path/to/a/local/copy{instead}"
    )


# --- config.json alone (task=inspect) --------------------------------------------------------------
def local_config(spec: Any) -> tuple[dict[str, Any], str]:
    """The checkpoint's config.json as a dict, from local files only, and a label saying which file it was.

    Order: `model.path`, the built-in model (built if needed), the Hugging Face cache for `model.id`,
    then the project's own config (`model.config_json`, under vlmsafety/models/configs/).
    """
    candidates: list[tuple[Path | None, str]] = []
    if spec.get("path"):
        candidates.append((Path(str(spec.path)).expanduser() / "config.json", f"config.json of model.path={spec.path}"))
    if spec.get("builtin"):
        candidates.append((ensure_builtin(spec.builtin) / "config.json", f"config.json of built-in {spec.builtin}"))
    if spec.get("id"):
        cached = try_to_load_from_cache(str(spec.id), "config.json", revision=spec.get("revision"))
        candidates.append((Path(cached) if isinstance(cached, str) else None, f"config.json of {spec.id} (Hugging Face cache)"))
    if spec.get("config_json"):
        path = Path(str(spec.config_json))
        path = path if path.is_absolute() else CONFIGS_DIR / path
        candidates.append((path, f"project config {path.name} (written from the published architecture; no local copy of the checkpoint)"))
    for path, label in candidates:
        if path is not None and path.is_file():
            check_not_lfs_pointer(path)
            return json.loads(path.read_text()), label
    raise VlmSafetyError(
        f"no config.json for model {spec.get('name')!r} on this machine: set model.path, or model.config_json, "
        f"or {_fetch_hint(spec)}"
    )
