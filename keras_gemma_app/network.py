"""A quick check that a model hub can be reached, so a machine without network fails fast.

Hub clients retry with back-off for tens of seconds before giving up; one
short connection attempt first turns that into an immediate, clear error.
"""

from __future__ import annotations

import os
import socket

KAGGLE_HOST = "api.kaggle.com"
HF_HOST = "huggingface.co"
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def kaggle_endpoint_overridden() -> bool:
    """Whether KAGGLE_API_ENDPOINT or KAGGLE_API_ENVIRONMENT points kagglehub somewhere else (no probe then)."""
    return any(os.environ.get(name) for name in ("KAGGLE_API_ENDPOINT", "KAGGLE_API_ENVIRONMENT"))


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds.

    With a proxy configured the answer is always True: the proxy, not this
    machine, decides what can be reached.
    """
    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
