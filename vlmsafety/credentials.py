"""The one secret filter: what looks like a credential, refusing it before Hydra writes anything, and
scrubbing it from every record (DESIGN.md §2: secrets come from environment variables only).

Three places use it:
- `cli.check_no_secrets` refuses a command-line override whose key names a secret or whose value
  looks like one, before Hydra composes (so nothing reaches `.hydra/`, `multirun.yaml` or a log);
- `SecretGuard`, a Hydra callback, refuses a composed config (a YAML file of the user's) that holds
  one, when the run or multirun starts: before Hydra saves any snapshot;
- `redact` masks secret-named values and credentials in URLs in what `records.write_json_atomic`
  writes (metrics.json carries the resolved config) — the last line of defence.
Only stdlib (and Hydra's callback base, which run.py imports anyway): runs before any heavy import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from hydra.experimental.callback import Callback

REDACTED = "[redacted]"

# The last part of a config key that names a secret: key, api_key, apiKey, hf_token, secret, password...
# (not job_key / cache_key / max_new_tokens: "key" alone or api/access/secret/private key only)
_SECRET_NAME = re.compile(
    r"^(?:(?:.*[_-])?(?:api|access|secret|private|auth)[_-]?key|key|apikey|(?:.*[_-])?(?:token|secret|password|passwd|pwd)"
    r"|credentials?|bearer|authorization)$",
    re.IGNORECASE,
)
# query parameters that carry a credential (endpoint="...?key=...")
_QUERY = re.compile(
    r"([?&;](?:key|api[_-]?key|apikey|token|access[_-]?token|auth|secret|client[_-]?secret|password|pwd|sig|signature)=)"
    r"([^&#\s\"']+)",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)([^/\s:@]+):([^/\s@]+)@", re.IGNORECASE)
_BEARER = re.compile(r"\b(bearer)\s+([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
# well-known key shapes: OpenAI-style, Hugging Face, GitHub, Google API keys, Slack
_KNOWN = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_-]{30,}|xox[abpr]-[A-Za-z0-9-]{10,})"
)


def is_secret_key(key: str) -> bool:
    """Whether a config key (dotted or not, with Hydra's +/~ prefixes) names a secret."""
    return bool(_SECRET_NAME.match(key.lstrip("+~").rsplit(".", 1)[-1].rsplit("/", 1)[-1]))


def secret_in_value(value: str) -> str | None:
    """What in `value` looks like a credential (a phrase for an error message, never the secret), or None."""
    if m := _QUERY.search(value):
        return f"a URL query parameter {m.group(1)[1:-1]!r}"
    if _USERINFO.search(value):
        return "a password in a URL (user:password@host)"
    if _BEARER.search(value):
        return "a bearer token"
    if _KNOWN.search(value):
        return "an API key or access token"
    return None


def scrub(text: str) -> str:
    """`text` with credentials masked: URL query values and passwords, bearer tokens, known key shapes."""
    text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KNOWN.sub(REDACTED, text)


def redact(node: Any) -> Any:
    """A copy of a JSON-like value with secret-named keys' values masked and every string scrubbed."""
    if isinstance(node, dict):
        return {k: (REDACTED if node_value_is_secret(k, v) else redact(v)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [redact(v) for v in node]
    if isinstance(node, str):
        return scrub(node)
    return node


def node_value_is_secret(key: Any, value: Any) -> bool:
    return isinstance(key, str) and is_secret_key(key) and value not in (None, "", REDACTED)


def refusal(where: str, why: str) -> str:
    return (
        f"refusing {where}: {why}; secrets come from environment variables only (e.g. PERSPECTIVE_API_KEY) and "
        "are never written into a config snapshot, log or record"
    )


def find_secret(node: Any, path: str = "") -> tuple[str, str] | None:
    """(dotted key, why) of the first credential in a config tree (raw, unresolved strings), or None."""
    if isinstance(node, dict):
        items: Iterable[tuple[Any, Any]] = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        why = secret_in_value(node) if isinstance(node, str) else None
        return (path, why) if why else None
    for k, v in items:
        sub = f"{path}.{k}" if path else str(k)
        if node_value_is_secret(k, v):
            return sub, "its name says it holds a secret"
        if found := find_secret(v, sub):
            return found
    return None


class SecretGuard(Callback):
    """Hydra callback (conf/config.yaml): refuse a composed config that holds a credential, when the run
    or multirun starts — before Hydra saves `.hydra/`, `multirun.yaml` or opens a log file."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _guard(config)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _guard(config)


def _guard(config: Any) -> None:
    from omegaconf import OmegaConf

    found = find_secret(OmegaConf.to_container(config, resolve=False))
    if found:
        import sys

        from vlmsafety.ui import print_error

        print_error(refusal(f"the config value {found[0]}", found[1]))
        sys.exit(2)
