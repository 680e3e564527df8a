"""Keeping compiled programs between processes, so a second run starts sooner.

JAX can store what XLA compiled in a folder and reuse it in the next process
(its persistent compilation cache). The app turns that on for its own
folder, ``$KERAS_GEMMA_CACHE/jax-compilation-cache``, unless the program has
chosen a folder already or ``KERAS_GEMMA_COMPILE_CACHE=0``. Measured with Gemma
3 270M (bfloat16, 2-core CPU), ``keras-gemma generate --max-new-tokens 1``: 12.9 s
for the first process, 10.2–10.6 s for the next ones (generating: 3.1 s → 1.5 s).
The rest is the same in every process: importing Keras, KerasHub and the
TensorFlow that KerasHub always imports (~4 s), and loading the weights. (The
decode loop, which hands tokens to the host as it goes, is compiled afresh each
time: JAX does not store programs with host callbacks.) TensorFlow graphs and
eager torch have nothing comparable to keep.
"""

from __future__ import annotations

import os

from keras_gemma_app.cache_dir import app_cache_dir

CACHE_ENV = "KERAS_GEMMA_COMPILE_CACHE"


def enabled() -> bool:
    """False when $KERAS_GEMMA_COMPILE_CACHE is 0, false, no or off."""
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def cache_folder():
    return app_cache_dir() / "jax-compilation-cache"


def enable_for(backend: str) -> str | None:
    """Points JAX's persistent compilation cache at the app's folder; returns it, or None if not used."""
    if backend != "jax" or not enabled():
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Keep every program: most here compile in well under JAX's default threshold of 1 s.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return str(folder)
