"""keras-gemma-app: run Google's Gemma models on JAX, TensorFlow or PyTorch through KerasHub.

Choose the backend first, then load a model and generate::

    import keras_gemma_app as kga
    kga.use_backend("torch")
    pipe = kga.load("gemma3_instruct_1b", dtype="bfloat16")
    pipe.generate("Why is the sky blue?", sampler=kga.TopP(p=0.9, temperature=0.7, seed=1))

Importing this package does not import keras; names load on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # Backend
    "use_backend": "keras_gemma_app.backend",
    "BACKENDS": "keras_gemma_app.backend",
    # Loading and generating
    "load": "keras_gemma_app.loading",
    "Pipeline": "keras_gemma_app.pipeline",
    "Completion": "keras_gemma_app.pipeline",
    "fim_prompt": "keras_gemma_app.templates",
    "import_gguf": "keras_gemma_app.gguf_import",
    "connect": "keras_gemma_app.server_client",
    "ModelServer": "keras_gemma_app.model_server",
    # Choosing a model
    "list_models": "keras_gemma_app.catalogue",
    "benchmark": "keras_gemma_app.bench",
    "recommend": "keras_gemma_app.variant_guide",
    "Recommendation": "keras_gemma_app.variant_guide",
    "detect_machine": "keras_gemma_app.hardware",
    "Machine": "keras_gemma_app.hardware",
    "estimate_memory": "keras_gemma_app.memory_estimate",
    "pull": "keras_gemma_app.kaggle_download",
    "save_quantized": "keras_gemma_app.quantized_preset",
    "cached_models": "keras_gemma_app.cache_inventory",
    "remove_cached": "keras_gemma_app.cache_inventory",
    # Samplers
    "Sampler": "keras_gemma_app.samplers",
    "Greedy": "keras_gemma_app.samplers",
    "TopK": "keras_gemma_app.samplers",
    "TopP": "keras_gemma_app.samplers",
    "Random": "keras_gemma_app.samplers",
    "Beam": "keras_gemma_app.samplers",
    "Contrastive": "keras_gemma_app.samplers",
    "sampler_from_options": "keras_gemma_app.samplers",
    # Errors
    "KerasGemmaError": "keras_gemma_app.errors",
    "BackendError": "keras_gemma_app.errors",
    "ModelNotFoundError": "keras_gemma_app.errors",
    "InvalidModelError": "keras_gemma_app.errors",
    "SettingsError": "keras_gemma_app.errors",
    "ConversionError": "keras_gemma_app.errors",
    "OfflineError": "keras_gemma_app.errors",
    "InsufficientMemoryError": "keras_gemma_app.errors",
    "KaggleAccessError": "keras_gemma_app.errors",
    "QuantizationError": "keras_gemma_app.errors",
    "ServerError": "keras_gemma_app.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_gemma_app' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
