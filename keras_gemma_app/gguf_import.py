"""Convert a Gemma 3 GGUF file (llama.cpp) into a KerasHub preset directory.

`import_gguf` writes the files `keras_hub.models.Gemma3CausalLM(...)
.save_to_preset(dir)` writes, in the same formats and HDF5 layout, without
building a Keras model: the model config comes from GGUF metadata, tensors
are dequantized one at a time in blocks of rows and streamed into
`model.weights.h5` with h5py in Keras's own layout, and the tokenizer is a
SentencePiece proto rebuilt from the GGUF vocabulary. Nothing here imports
Keras, so the caller can still pick the backend afterwards.

Example:

```python
from keras_gemma_app.gguf_import import import_gguf

preset = import_gguf("gemma-3-270m-q4_k_m.gguf", "presets/gemma3_270m")
# Later, after choosing a backend:
lm = keras_hub.models.Gemma3CausalLM.from_preset(str(preset))
```
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import struct

from keras_gemma_app.atomic_dir import check_new_dir, staged_directory
from keras_gemma_app.errors import ConversionError
from keras_gemma_app.errors import ModelNotFoundError
from keras_gemma_app.errors import SettingsError

__all__ = ["DTYPES", "import_gguf"]

DTYPES = ("bfloat16", "float32")

ARCHITECTURE = "gemma3"

# KerasHub's Gemma3Backbone hard-codes these RoPE wavelengths (global layers,
# sliding-window layers) and the "5 local, 1 global" layer pattern.
_GLOBAL_ROPE_BASE = 1_000_000.0
_LOCAL_ROPE_BASE = 10_000.0
_SLIDING_WINDOW_PATTERN = 6

# The preprocessor's default packing length in KerasHub.
_DEFAULT_SEQUENCE_LENGTH = 1024

# llama.cpp recognises Gemma 3 27B by its 62 blocks and scales queries by
# 1/sqrt(hidden / heads) for it (Hugging Face: query_pre_attn_scalar 168);
# every other size uses 1/sqrt(head_dim).
_GEMMA3_27B_BLOCKS = 62

# Tasks KerasHub lists in metadata.json for a Gemma3Backbone.
_TASKS = ["CausalLM", "TextEmbedder"]

_KERAS_HUB_MODULE = "keras_hub.src.models.gemma3"


def import_gguf(
    gguf_path, out_dir, *, dtype="bfloat16", force=False, progress=None
) -> pathlib.Path:
    """Convert a Gemma 3 GGUF checkpoint into a KerasHub preset directory.

    The result loads with `keras_hub.models.Gemma3CausalLM.from_preset(dir)`
    (or `keras_hub.models.CausalLM.from_preset(dir)`) on any backend. The
    preset is written into a temporary directory next to `out_dir` and
    renamed into place at the end; on any error or interrupt the temporary
    directory is removed, and with `force` an existing `out_dir` is only
    replaced once the new preset is complete.

    Args:
        gguf_path: Path of a `.gguf` file of a Gemma 3 text model (any
            llama.cpp quantization this module can dequantize).
        out_dir: Directory to create.
        dtype: Weight dtype of the preset, `"bfloat16"` or `"float32"`.
        force: Replace `out_dir` if it exists.
        progress: Optional callable `progress(stage, completed, total)`.
            Stages: `"dequantizing"` (completed/total count parameters,
            called after each block of rows) and `"writing"` (preset files).

    Returns:
        The preset directory as a `pathlib.Path`.

    Raises:
        SettingsError: `dtype` is not one of `DTYPES`.
        ModelNotFoundError: `gguf_path` does not exist.
        InvalidModelError: `out_dir` exists and `force` is false.
        ConversionError: The file is not a complete GGUF file, is not a
            Gemma 3 model, or holds a tensor type that cannot be
            dequantized.

    Example:

    ```python
    def show(stage, done, total):
        print(f"{stage}: {done}/{total}")

    import_gguf("gemma-3-270m-q4_k_m.gguf", "gemma3_270m", progress=show)
    ```
    """
    from keras_gemma_app.gguf_reader import GGUFReader
    from keras_gemma_app.gguf_tokenizer import build_sentencepiece_proto
    from keras_gemma_app.gguf_tokenizer import has_vision_tokens

    if dtype not in DTYPES:
        raise SettingsError(
            f"Expected dtype to be one of {', '.join(DTYPES)}, received "
            f"{dtype!r}"
        )
    gguf_path = pathlib.Path(gguf_path)
    out_dir = pathlib.Path(out_dir)
    if not gguf_path.is_file():
        raise ModelNotFoundError(
            f"Expected a GGUF file, received a path that "
            f"{'is a directory' if gguf_path.is_dir() else 'does not exist'}"
            f": {gguf_path}"
        )
    check_new_dir(out_dir, force)
    report = progress or _ignore_progress

    with GGUFReader(gguf_path) as reader:
        config = gemma3_backbone_config(reader.metadata, reader.tensors)
        plan = weight_plan(config)
        _check_tensors(reader, plan)
        proto = build_sentencepiece_proto(reader.metadata)
        files = _preset_configs(
            config,
            dtype=dtype,
            has_vision_tokens=has_vision_tokens(reader.metadata),
            sequence_length=_sequence_length(reader.metadata),
            parameter_count=sum(_size(e.shape) for e in plan if e.tensor),
        )

        with staged_directory(out_dir, force=force, purpose="importing") as staged:
            write_weights(reader, plan, staged / "model.weights.h5", dtype, report)
            _write_files(staged, files, proto, report)
    return out_dir


def _ignore_progress(stage, completed, total):
    del stage, completed, total


# Config.


def gemma3_backbone_config(metadata, tensors):
    """`Gemma3Backbone` arguments for a Gemma 3 GGUF file.

    Fields GGUF does not store are derived the way KerasHub's Hugging Face
    converter (`convert_gemma3.py`) derives them from the HF config: query/key
    norms and post-norms from the tensors present, sliding window from
    `attention.sliding_window`, global RoPE scaling from `rope.scaling.*`,
    soft caps from the `*_softcapping` keys (absent for Gemma 3: `None`).

    Args:
        metadata: `GGUFReader.metadata`.
        tensors: `GGUFReader.tensors`.

    Returns:
        A dict in `Gemma3Backbone.get_config()` order (without name, trainable
        and dtype).

    Raises:
        ConversionError: Not a Gemma 3 model, or one KerasHub's Gemma 3 cannot
            represent.
    """
    arch = metadata.get("general.architecture")
    if arch != ARCHITECTURE:
        raise ConversionError(
            f"Expected a Gemma 3 GGUF file (general.architecture "
            f"'{ARCHITECTURE}'), received architecture {arch!r}"
        )

    def get(key, default=...):
        full_key = f"{arch}.{key}"
        if full_key in metadata:
            return _uniform(metadata[full_key], full_key)
        if default is ...:
            raise ConversionError(
                f"Expected metadata key {full_key} in the GGUF file, "
                f"received none"
            )
        return default

    num_layers = int(get("block_count"))
    hidden_dim = int(get("embedding_length"))
    num_heads = int(get("attention.head_count"))
    num_kv_heads = int(get("attention.head_count_kv", num_heads))
    head_dim = int(get("attention.key_length", hidden_dim // num_heads))
    value_dim = int(get("attention.value_length", head_dim))
    if value_dim != head_dim:
        raise ConversionError(
            f"Expected attention.value_length equal to key_length "
            f"({head_dim}), received {value_dim}"
        )
    if "token_embd.weight" not in tensors:
        raise ConversionError(
            "Expected tensor token_embd.weight in the GGUF file, received none"
        )
    vocabulary_size = tensors["token_embd.weight"].shape[0]

    rope_base = float(get("rope.freq_base", _GLOBAL_ROPE_BASE))
    local_base = float(get("rope.freq_base_swa", _LOCAL_ROPE_BASE))
    if (rope_base, local_base) != (_GLOBAL_ROPE_BASE, _LOCAL_ROPE_BASE):
        raise ConversionError(
            f"Expected RoPE bases {_GLOBAL_ROPE_BASE:g} (global) and "
            f"{_LOCAL_ROPE_BASE:g} (local), which KerasHub's Gemma 3 fixes, "
            f"received {rope_base:g} and {local_base:g}"
        )
    scaling_type = get("rope.scaling.type", "none")
    global_scaling = float(get("rope.scaling.factor", 1.0) or 1.0)
    if scaling_type not in ("none", "linear"):
        raise ConversionError(
            f"Expected RoPE scaling 'none' or 'linear', received "
            f"{scaling_type!r}"
        )
    if scaling_type == "none":
        global_scaling = 1.0

    sliding_window = int(get("attention.sliding_window", 0) or 0)
    _check_sliding_window_pattern(
        get("attention.sliding_window_pattern", None), num_layers
    )
    query_pre_attn_scalar = (
        hidden_dim // num_heads
        if num_layers == _GEMMA3_27B_BLOCKS
        else head_dim
    )

    return {
        "vocabulary_size": vocabulary_size,
        "image_size": None,
        "num_layers": num_layers,
        "num_query_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "hidden_dim": hidden_dim,
        "intermediate_dim": int(get("feed_forward_length")),
        "head_dim": head_dim,
        "query_head_dim_normalize": query_pre_attn_scalar == head_dim,
        "use_query_key_norm": "blk.0.attn_q_norm.weight" in tensors,
        "use_post_ffw_norm": "blk.0.post_ffw_norm.weight" in tensors,
        "use_post_attention_norm": (
            "blk.0.post_attention_norm.weight" in tensors
        ),
        "attention_logit_soft_cap": _optional_float(
            get("attn_logit_softcapping", None)
        ),
        "final_logit_soft_cap": _optional_float(
            get("final_logit_softcapping", None)
        ),
        "use_sliding_window_attention": sliding_window > 0,
        "sliding_window_size": sliding_window or 4096,
        "local_rope_scaling_factor": 1.0,
        "global_rope_scaling_factor": global_scaling,
        "vision_encoder": None,
        "use_bidirectional_attention": False,
        "layer_norm_epsilon": _float32_to_float(
            get("attention.layer_norm_rms_epsilon", 1e-6)
        ),
        "dropout": 0,
        "is_embedding_model": False,
        "pooling_intermediate_dim": None,
        "embedding_dim": None,
    }


def _uniform(value, key):
    """A scalar from a metadata value that may be a per-layer array."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    values = set(value.tolist() if hasattr(value, "tolist") else value)
    if len(values) != 1:
        raise ConversionError(
            f"Expected one value of {key} for all layers, received "
            f"{sorted(values)}"
        )
    return values.pop()


def _check_sliding_window_pattern(pattern, num_layers):
    if pattern is None:
        return
    expected = [i % _SLIDING_WINDOW_PATTERN < 5 for i in range(num_layers)]
    if isinstance(pattern, (int, float)):
        ok = int(pattern) == _SLIDING_WINDOW_PATTERN
    else:
        ok = [bool(x) for x in pattern] == expected
    if not ok:
        raise ConversionError(
            f"Expected the Gemma 3 sliding-window pattern (5 local layers, "
            f"then 1 global), received {pattern!r}"
        )


def _optional_float(value):
    return None if value in (None, 0, 0.0) else float(value)


def _float32_to_float(value):
    """The shortest decimal that reads back as the same float32."""
    as_f32 = struct.unpack("<f", struct.pack("<f", float(value)))[0]
    for digits in range(1, 10):
        candidate = float(f"{as_f32:.{digits}g}")
        if struct.pack("<f", candidate) == struct.pack("<f", as_f32):
            return candidate
    return as_f32


def _sequence_length(metadata):
    context = metadata.get(f"{ARCHITECTURE}.context_length")
    if not context:
        return _DEFAULT_SEQUENCE_LENGTH
    return min(int(context), _DEFAULT_SEQUENCE_LENGTH)


# Weights.


@dataclasses.dataclass(frozen=True)
class WeightEntry:
    """One Keras layer in `model.weights.h5`, in Keras's save order.

    Attributes:
        path: HDF5 group path of the layer, e.g.
            `"layers/gemma3_decoder_block_2/attention/query_dense"`.
        name: The layer name Keras stores as the `vars` group attribute.
        tensor: GGUF tensor feeding the layer's one variable, or `None` for
            layers without variables.
        shape: Keras variable shape.
        layout: How the GGUF (Hugging Face) layout maps to Keras: `"copy"`,
            `"norm"` (stored as 1 + w), `"heads_in"` (q/k/v),
            `"heads_out"` (attention output) or `"transpose"` (FFN).
    """

    path: str
    name: str
    tensor: str | None = None
    shape: tuple = ()
    layout: str = "copy"


def weight_plan(config):
    """The layers of a text-only `Gemma3Backbone` in Keras's save order.

    Args:
        config: `gemma3_backbone_config(...)`.

    Returns:
        A list of `WeightEntry`.
    """
    hidden = config["hidden_dim"]
    heads = config["num_query_heads"]
    kv_heads = config["num_key_value_heads"]
    head_dim = config["head_dim"]
    ffw = config["intermediate_dim"]
    plan = [
        WeightEntry("", "gemma3_backbone"),
        WeightEntry("layers/input_layer", "token_ids"),
        WeightEntry(
            "layers/reversible_embedding",
            "token_embedding",
            "token_embd.weight",
            (config["vocabulary_size"], hidden),
        ),
        WeightEntry("layers/input_layer_1", "padding_mask"),
    ]
    for i in range(config["num_layers"]):
        block = "layers/gemma3_decoder_block" + (f"_{i}" if i else "")
        att = f"{block}/attention"
        blk = f"blk.{i}"
        suffix = f"_{i}" if i else ""

        def norm(path, name, tensor, size=hidden):
            return WeightEntry(path, name, tensor, (size,), "norm")

        plan += [
            WeightEntry(block, f"decoder_block_{i}"),
            WeightEntry(att, "attention"),
            WeightEntry(f"{att}/dropout_layer", f"dropout{suffix}"),
            WeightEntry(
                f"{att}/key_dense",
                "key",
                f"{blk}.attn_k.weight",
                (kv_heads, hidden, head_dim),
                "heads_in",
            ),
        ]
        if config["use_query_key_norm"]:
            plan.append(
                norm(
                    f"{att}/key_norm",
                    "key_norm",
                    f"{blk}.attn_k_norm.weight",
                    head_dim,
                )
            )
        plan += [
            WeightEntry(
                f"{att}/output_dense",
                "attention_output",
                f"{blk}.attn_output.weight",
                (heads, head_dim, hidden),
                "heads_out",
            ),
            WeightEntry(
                f"{att}/query_dense",
                "query",
                f"{blk}.attn_q.weight",
                (heads, hidden, head_dim),
                "heads_in",
            ),
        ]
        if config["use_query_key_norm"]:
            plan.append(
                norm(
                    f"{att}/query_norm",
                    "query_norm",
                    f"{blk}.attn_q_norm.weight",
                    head_dim,
                )
            )
        plan += [
            WeightEntry(f"{att}/rope_layer", f"rotary_embedding{suffix}"),
            WeightEntry(f"{att}/softmax", f"softmax{suffix}"),
            WeightEntry(
                f"{att}/value_dense",
                "value",
                f"{blk}.attn_v.weight",
                (kv_heads, hidden, head_dim),
                "heads_in",
            ),
            WeightEntry(
                f"{block}/ffw_linear",
                "ffw_linear",
                f"{blk}.ffn_down.weight",
                (ffw, hidden),
                "transpose",
            ),
            WeightEntry(
                f"{block}/gating_ffw",
                "ffw_gating",
                f"{blk}.ffn_gate.weight",
                (hidden, ffw),
                "transpose",
            ),
            WeightEntry(
                f"{block}/gating_ffw_2",
                "ffw_gating_2",
                f"{blk}.ffn_up.weight",
                (hidden, ffw),
                "transpose",
            ),
        ]
        if config["use_post_attention_norm"]:
            plan.append(
                norm(
                    f"{block}/post_attention_norm",
                    "post_attention_norm",
                    f"{blk}.post_attention_norm.weight",
                )
            )
        if config["use_post_ffw_norm"]:
            plan.append(
                norm(
                    f"{block}/post_ffw_norm",
                    "post_ffw_norm",
                    f"{blk}.post_ffw_norm.weight",
                )
            )
        plan += [
            norm(
                f"{block}/pre_attention_norm",
                "pre_attention_norm",
                f"{blk}.attn_norm.weight",
            ),
            norm(
                f"{block}/pre_ffw_norm",
                "pre_ffw_norm",
                f"{blk}.ffn_norm.weight",
            ),
        ]
    plan.append(
        norm("layers/rms_normalization", "final_normalization",
             "output_norm.weight")
    )  # fmt: skip
    return plan


def _gguf_shape(entry):
    """The Hugging Face (GGUF row-major) shape feeding a Keras variable."""
    shape = entry.shape
    if entry.layout == "heads_in":  # (heads, hidden, hd) <- (heads*hd, hidden)
        return (shape[0] * shape[2], shape[1])
    if entry.layout == "heads_out":  # (heads, hd, hidden) <- (hidden, heads*hd)
        return (shape[2], shape[0] * shape[1])
    if entry.layout == "transpose":
        return (shape[1], shape[0])
    return shape


# Tensors Gemma 3 GGUF files may carry that KerasHub has no place for:
# `output.weight` is a copy of the tied embedding some quantizers write.
_IGNORED_TENSORS = ("output.weight",)


def _check_tensors(reader, plan):
    tensors = reader.tensors
    wanted = {e.tensor: e for e in plan if e.tensor}
    for name, entry in wanted.items():
        info = tensors.get(name)
        if info is None:
            raise ConversionError(
                f"Expected tensor {name} in the GGUF file, received none"
            )
        if tuple(info.shape) != _gguf_shape(entry):
            raise ConversionError(
                f"Expected tensor {name} of shape {_gguf_shape(entry)}, "
                f"received {tuple(info.shape)}"
            )
        reader.check_decodable(info)
    extra = sorted(set(tensors) - set(wanted) - set(_IGNORED_TENSORS))
    if extra:
        raise ConversionError(
            f"Expected only Gemma 3 text-model tensors, received "
            f"{len(extra)} others, e.g. {extra[0]}"
        )


def write_weights(reader, plan, path, dtype, progress=None):
    """Write `model.weights.h5` exactly as Keras's `save_weights` lays it out.

    Groups, `name` attributes, dataset dtypes (bfloat16 as 2-byte opaque with
    a `dtype="bfloat16"` attribute, float32 as a linked anonymous dataset)
    and creation order follow `keras.src.saving.saving_lib.H5IOStore`, so a
    preset saved by Keras from the same weights is byte-identical. Layer
    names of weightless layers are those of a fresh Python process.

    Args:
        reader: An open `GGUFReader`.
        plan: `weight_plan(config)`.
        path: Output file path.
        dtype: `"bfloat16"` or `"float32"`.
        progress: Optional `progress(stage, completed, total)`.
    """
    import h5py

    from keras_gemma_app.gguf_reader import numpy_dtype

    np_dtype = numpy_dtype(dtype)
    report = progress or _ignore_progress
    total = sum(_size(e.shape) for e in plan if e.tensor)
    done = 0
    report("dequantizing", 0, total)
    with h5py.File(path, "w") as f:
        for entry in plan:
            group = f.create_group(entry.path) if entry.path else f
            group = group.create_group("vars")
            group.attrs["name"] = entry.name
            if entry.tensor is None:
                continue
            info = reader.tensors[entry.tensor]
            if dtype == "bfloat16":
                dataset = group.create_dataset("0", entry.shape, np_dtype)
            else:
                dataset = group.create_dataset(None, entry.shape, np_dtype)
            base = done
            for rows, selection, values in _converted(
                reader, info, entry, np_dtype
            ):
                if values is not None:
                    dataset[selection] = values
                done = base + rows * _size(entry.shape) // _rows(info)
                report("dequantizing", done, total)
            if dtype == "bfloat16":
                dataset.attrs["dtype"] = "bfloat16"
            else:
                group["0"] = dataset
            done = base + _size(entry.shape)


def _converted(reader, info, entry, np_dtype):
    """Yield `(gguf_rows_done, selection, values)` blocks for the dataset.

    Row-major layouts stream each block of rows straight into its slice of
    the dataset; transposed layouts fill one array (values `None` until the
    last block) and write it whole.
    """
    import numpy as np

    if entry.layout in ("copy", "norm"):
        for start, stop, values in reader.iter_rows(info):
            if entry.layout == "norm":
                values = values - np.float32(1.0)
            if len(entry.shape) == 1:  # A vector is a single GGUF row.
                yield stop, Ellipsis, values.reshape(entry.shape).astype(
                    np_dtype
                )
                continue
            values = values.reshape((stop - start,) + tuple(entry.shape[1:]))
            yield stop, slice(start, stop), values.astype(np_dtype)
        return

    out = np.empty(entry.shape, np_dtype)
    rows = _rows(info)
    multiple = entry.shape[2] if entry.layout == "heads_in" else 1
    for start, stop, values in reader.iter_rows(info, multiple):
        if entry.layout == "heads_in":
            _, hidden, head_dim = entry.shape
            h0, h1 = start // head_dim, stop // head_dim
            out[h0:h1] = values.reshape(h1 - h0, head_dim, hidden).transpose(
                0, 2, 1
            )
        elif entry.layout == "heads_out":
            heads, head_dim, _ = entry.shape
            out[:, :, start:stop] = values.reshape(
                stop - start, heads, head_dim
            ).transpose(1, 2, 0)
        else:
            out[:, start:stop] = values.T
        if stop < rows:
            yield stop, Ellipsis, None
    yield rows, Ellipsis, out


def _rows(info):
    return info.size // info.shape[-1]


def _size(shape):
    n = 1
    for dim in shape:
        n *= dim
    return n


# Preset files.


def _dtype_policy(name):
    return {
        "module": "keras",
        "class_name": "DTypePolicy",
        "config": {"name": name},
        "registered_name": None,
    }


def _preset_configs(
    config, *, dtype, has_vision_tokens, sequence_length, parameter_count
):
    """The JSON documents of a Gemma3CausalLM preset, by file name."""
    backbone = {
        "module": f"{_KERAS_HUB_MODULE}.gemma3_backbone",
        "class_name": "Gemma3Backbone",
        "config": {
            "name": "gemma3_backbone",
            "trainable": True,
            "dtype": _dtype_policy(dtype),
            **config,
        },
        "registered_name": "keras_hub>Gemma3Backbone",
    }
    tokenizer = {
        "module": f"{_KERAS_HUB_MODULE}.gemma3_tokenizer",
        "class_name": "Gemma3Tokenizer",
        "config": {
            "name": "gemma3_tokenizer",
            "trainable": True,
            "dtype": _dtype_policy("int32"),
            "config_file": "tokenizer.json",
            "proto": None,
            "sequence_length": None,
            "add_bos": False,
            "add_eos": False,
            "has_vision_tokens": has_vision_tokens,
        },
        "registered_name": "keras_hub>Gemma3Tokenizer",
    }
    preprocessor = {
        "module": f"{_KERAS_HUB_MODULE}.gemma3_causal_lm_preprocessor",
        "class_name": "Gemma3CausalLMPreprocessor",
        "config": {
            "name": "gemma3_causal_lm_preprocessor",
            "trainable": True,
            "dtype": _dtype_policy("float32"),
            "tokenizer": tokenizer,
            "config_file": "preprocessor.json",
            "sequence_length": sequence_length,
            "add_start_token": True,
            "add_end_token": True,
            "num_vision_tokens_per_image": 256,
            "max_images_per_prompt": 2,
        },
        "registered_name": "keras_hub>Gemma3CausalLMPreprocessor",
    }
    task = {
        "module": f"{_KERAS_HUB_MODULE}.gemma3_causal_lm",
        "class_name": "Gemma3CausalLM",
        "config": {
            "backbone": backbone,
            "preprocessor": preprocessor,
            "name": "gemma3_causal_lm",
        },
        "registered_name": "keras_hub>Gemma3CausalLM",
    }
    metadata = {
        "keras_version": _package_version("keras"),
        "keras_hub_version": _package_version("keras-hub"),
        "parameter_count": parameter_count,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "tasks": list(_TASKS),
    }
    return {
        "task.json": task,
        "config.json": backbone,
        "metadata.json": metadata,
        "preprocessor.json": preprocessor,
        "tokenizer.json": tokenizer,
    }


def _package_version(name):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _write_files(directory, files, proto, progress):
    total = len(files) + 1
    for done, (name, document) in enumerate(files.items()):
        (directory / name).write_text(json.dumps(document, indent=4))
        progress("writing", done + 1, total)
    assets = directory / "assets" / "tokenizer"
    assets.mkdir(parents=True)
    (assets / "vocabulary.spm").write_bytes(proto)
    progress("writing", total, total)
