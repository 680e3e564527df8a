"""What each Keras backend's framework is, and what devices it sees."""

from __future__ import annotations

import dataclasses
from importlib import metadata

from keras_gemma_app.backend import BACKENDS, DEFAULT_BACKEND, is_installed, requested_backend

_DISTRIBUTIONS = {
    "jax": ("jax",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "torch": ("torch",),
}


@dataclasses.dataclass(frozen=True)
class BackendInfo:
    """One backend as this machine sees it.

    Attributes:
        name: "jax", "tensorflow" or "torch".
        installed: whether its framework can be imported.
        version: the framework's version, or None.
        devices: device names such as "CPU:0" or "GPU:0".
        selected: whether a model would run on it now (the --backend default).
        builtin_default: whether it is the app's own default.
        error: why devices could not be listed, if they could not.
    """

    name: str
    installed: bool
    version: str | None
    devices: tuple[str, ...]
    selected: bool
    builtin_default: bool
    error: str | None = None


def _version(name: str) -> str | None:
    for distribution in _DISTRIBUTIONS[name]:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def _jax_devices() -> list[str]:
    import jax

    return [f"{d.platform.upper()}:{d.id}" for d in jax.devices()]


def _tensorflow_devices() -> list[str]:
    import tensorflow as tf

    devices = tf.config.list_physical_devices()
    return [f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in devices]


def _torch_devices() -> list[str]:
    import torch

    devices = ["CPU:0"]
    if torch.cuda.is_available():
        devices += [f"GPU:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("MPS:0")
    return devices


_LISTERS = {"jax": _jax_devices, "tensorflow": _tensorflow_devices, "torch": _torch_devices}


def describe_backend(name: str) -> BackendInfo:
    """Imports backend ``name``'s framework (not keras) and lists its devices."""
    installed = is_installed(name)
    selected = requested_backend() == name
    devices, error = (), None
    if installed:
        try:
            devices = tuple(_LISTERS[name]())
        except Exception as exc:  # a broken install is reported, not raised
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return BackendInfo(name, installed, _version(name), devices, selected, name == DEFAULT_BACKEND, error)


def describe_backends() -> list[BackendInfo]:
    """Returns :class:`BackendInfo` for jax, tensorflow and torch."""
    return [describe_backend(name) for name in BACKENDS]
