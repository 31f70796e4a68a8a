"""The Hugging Face Hub as codelora reaches it: an unreachable hub turns into offline mode at once.

huggingface_hub retries a request that cannot connect (5 times, backing off up to 8 s), and transformers asks
the hub before it falls back to the local cache, so without HF_HUB_OFFLINE set an uncached hub id on a machine
without network took ~85 s of `Retrying in 8s [Retry 5/5]` before codelora's one-line error. `go_offline_if_unreachable`
makes one TCP connection to the hub's endpoint (HF_ENDPOINT, default https://huggingface.co) with a short timeout
before the first hub call of the process; when it fails, offline mode is switched on for huggingface_hub,
transformers and datasets (and HF_HUB_OFFLINE=1 for child processes), so cached files still load and an uncached
id fails in a second.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from urllib.parse import urlsplit

__all__ = ["PROBE_TIMEOUT", "endpoint", "go_offline_if_unreachable", "offline"]

PROBE_TIMEOUT = 3.0  # seconds for the TCP connect to the endpoint (a reachable hub answers in well under one)


def endpoint() -> str:
    """The hub endpoint huggingface_hub uses (HF_ENDPOINT or https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline() -> bool:
    """Whether huggingface_hub is in offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, or set by this module)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _reachable(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # refused, unreachable, no DNS, timed out
        return False


@functools.cache
def go_offline_if_unreachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """True when the hub can be used; else switch this process to offline mode (once) and return False.

    Already offline (HF_HUB_OFFLINE=1): False, no probe. The result is kept for the process.
    """
    if offline():
        return False
    url = endpoint()
    if _reachable(url, timeout):
        return True
    _set_offline()
    print(f"codelora: the Hugging Face Hub ({url}) cannot be reached; using the local cache only", file=sys.stderr)
    return False


def _set_offline() -> None:
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"  # child processes (sandbox, accelerate) inherit it
    constants.HF_HUB_OFFLINE = True  # huggingface_hub and transformers read this at call time
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:  # imported later, it reads huggingface_hub's constant set above
        datasets_config.HF_HUB_OFFLINE = True
        datasets_config.HF_DATASETS_OFFLINE = True
