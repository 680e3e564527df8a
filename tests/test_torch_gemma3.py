"""The plain-torch Gemma 3 forward gives KerasHub's greedy tokens, bit for bit, on the real model."""

import json
import pathlib
import subprocess
import sys

import pytest

WORKER = pathlib.Path(__file__).with_name("decoding_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_decoding_runs_plain_torch_and_equals_keras_hub(real_preset, tmp_path, dtype):
    out = tmp_path / "torch.json"
    done = subprocess.run([sys.executable, str(WORKER), "torch", str(real_preset), str(out), dtype],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["adapter"] == "TorchGemma3"
    # Two prompts of different lengths: the batch runs in lockstep and the cache keeps prompt entries.
    assert result["streamed"] == result["reference"]
    assert [len(tokens) for tokens in result["streamed"]] == [24, 24]


def test_supports_only_what_it_mirrors(tiny_preset):
    from keras_gemma_app.torch_gemma3 import supports
    import keras_gemma_app as kga

    # In-process tests run on jax, but the check reads only the model's structure.
    assert supports(kga.load(str(tiny_preset)).causal_lm)
    # float16 stays with KerasHub, which clips activations in that dtype.
    assert not supports(kga.load(str(tiny_preset), dtype="float16").causal_lm)


def test_import_does_not_import_torch_or_keras():
    code = ("import sys, keras_gemma_app.torch_gemma3\n"
            "print(sorted(m for m in ('torch', 'keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


COMPILED = r"""
import json, sys
import numpy as np
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import _model_adapter
pipe = kga.load(sys.argv[1])
adapter = _model_adapter(pipe.causal_lm)
from keras_gemma_app.perplexity import token_ids
row = token_ids(pipe.causal_lm, "The capital of France is")
# Two rows: the second's product inputs are not the first's memory.
ids = torch.tensor(np.stack([row, row[::-1]]))
with torch.inference_mode():
    for _ in range(2):  # the second call runs what the first compiled
        hidden, cache = adapter.forward(ids, adapter.empty_cache(2, ids.shape[1] + 4), 0)
        logits = [adapter.logits(hidden[:, -1]).float().numpy()]
        for step in range(4):  # one-token steps, fed the same tokens in both runs
            token, index = ids[:, step:step + 1], ids.shape[1] + step
            hidden, cache = adapter.forward(token, cache, index, update_mask=torch.tensor([[True], [True]]))
            logits.append(adapter.logits(hidden[:, -1]).float().numpy())
    # One row: its one-token steps run as one compiled graph when compiling.
    one = ids[:1]
    hidden, cache = adapter.forward(one, adapter.empty_cache(1, one.shape[1] + 4), 0)
    single = [adapter.logits(hidden[:, -1]).float().numpy()]
    for step in range(4):
        hidden, cache = adapter.forward(one[:, step:step + 1], cache, one.shape[1] + step)
        single.append(adapter.logits(hidden[:, -1]).float().numpy())
step = adapter._compiled_step
from torch._dynamo.utils import counters
print(json.dumps({"compiled": hasattr(adapter._block, "_torchdynamo_orig_callable"),
                  "graph_breaks": sum(counters["graph_break"].values()),
                  "step_compiled": step is not None and bool(step._positions),
                  "logits": np.stack(logits).tolist(), "single": np.stack(single).tolist()}))
"""


@pytest.mark.slow
def test_torch_compile_opt_in_computes_the_eager_logits(real_quantized, tmp_path):
    import numpy as np

    from conftest import run_python

    preset = str(real_quantized["int4"][0])
    runs = {}
    for flag in (None, "1"):
        # A fresh compile cache: a cached graph from an earlier torch build must not stand in for this one.
        env = {"KERAS_GEMMA_TORCH_COMPILE": flag, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
        done = run_python(COMPILED, preset, env=env, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[flag] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs[None]["compiled"] is False and runs["1"]["compiled"] is True
    assert runs[None]["step_compiled"] is False and runs["1"]["step_compiled"] is True
    # Whole graphs: the custom ops are registered before tracing, the engine's product by a tensor key.
    assert runs["1"]["graph_breaks"] == 0
    for key in ("logits", "single"):
        # (prompt + 4 steps, rows, vocabulary)
        eager, compiled = np.array(runs[None][key]), np.array(runs["1"][key])
        # Fused kernels round differently: the same logits to bfloat16 precision, not bit for bit,
        # so greedy text may part at a near tie after a few tokens.
        assert (np.argmax(compiled, axis=-1) == np.argmax(eager, axis=-1)).mean() >= 0.8, key
        assert np.max(np.abs(compiled - eager)) < 0.05 * np.max(np.abs(eager)), key


STALE = """
import json, sys
import numpy as np
import keras_gemma_app as kga
kga.use_backend("torch")
import keras
from keras_gemma_app.decoding import Decoder

pipe = kga.load(sys.argv[1], dtype="bfloat16")
causal_lm = pipe.causal_lm
causal_lm.compile(sampler="greedy")
prompt = "the sea and the wind"
row = [pipe.tokenizer.start_token_id, *np.asarray(pipe.tokenizer(prompt)).tolist()]
inputs = pipe.preprocessor.generate_preprocess([prompt], sequence_length=len(row) + 8)

def app(decoder):
    return [int(s.token_ids[0]) for s in decoder.stream([row], max_new_tokens=8, sampler=kga.Greedy(), stop_token_ids=())]

def keras_hub():
    out = causal_lm.make_generate_function()(inputs, stop_token_ids=None)["token_ids"]
    return keras.ops.convert_to_numpy(out)[0, len(row):].tolist()

decoder = Decoder(causal_lm)
before = [app(decoder), keras_hub()]
adapter = decoder._model
table = causal_lm.backbone.token_embedding.embeddings
table.assign(keras.ops.flip(table.value, axis=0))
after = [app(decoder), keras_hub()]
print(json.dumps({"before": before, "after": after, "rebuilt": decoder._model is not adapter,
                  "adapter": type(adapter).__name__}))
"""


def test_weights_assigned_after_packing_are_used(tiny_preset):
    from conftest import run_python

    # bfloat16 on torch packs copies of the weights for oneDNN: a later assign must reach them.
    done = run_python(STALE, str(tiny_preset))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["adapter"] == "TorchGemma3"
    assert result["before"][0] == result["before"][1]
    assert result["after"][0] == result["after"][1]
    assert result["after"][0] != result["before"][0]
    assert result["rebuilt"]


STEP = r"""
import json, sys
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import _model_adapter
settings = {"quantize": "int4"} if sys.argv[2] == "int4" else {"dtype": sys.argv[2]}
adapter = _model_adapter(kga.load(sys.argv[1], **settings).causal_lm)
torch.manual_seed(0)
prompt = torch.randint(4, 300, (2, 40))
errors, kept, equal = [], [], []
with torch.inference_mode():
    _, cache = adapter.forward(prompt, adapter.empty_cache(2, 48), 0)
    # Inside the sliding window (16 here), at its edge and past it.
    for index in (3, 15, 16, 40, 47):
        results = []
        for lean in (False, True):
            adapter.lean_step = lean
            copy = tuple((k.clone(), v.clone()) for k, v in cache)
            # The second row keeps its cache entry at ``index`` (a longer prompt's token).
            hidden, copy = adapter.forward(torch.tensor([[7], [9]]), copy, index,
                                           update_mask=torch.tensor([[True], [False]]))
            results.append((hidden, copy))
        (general, general_cache), (lean, lean_cache) = results
        errors.append(float((lean - general).float().norm() / general.float().norm()))
        equal.append(torch.equal(lean, general)
                     and all(torch.equal(a, b) for x, y in zip(lean_cache, general_cache) for a, b in zip(x, y)))
        kept.append(all(torch.equal(new[1][1:, index], old[1][1:, index])
                        for new, old in zip(lean_cache, cache)))
print(json.dumps({"lean_step": type(adapter).__name__ == "TorchGemma3", "errors": errors, "kept": kept,
                  "equal": equal}))
"""


def test_one_token_step_computes_what_the_masked_block_does(tiny_preset):
    from conftest import run_python

    # Quantized models decode one token through a shorter path (no masks, attention over the
    # filled window only); it must compute what the general block computes, up to the bfloat16
    # rounding of the packed products' inputs.
    done = run_python(STEP, str(tiny_preset), "int4")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["lean_step"]
    assert max(result["errors"]) < 0.02, result["errors"]
    assert all(result["kept"])


def test_bfloat16_one_token_step_equals_the_masked_block_bit_for_bit(tiny_preset):
    from conftest import run_python

    # bfloat16 weights decode one token through the same short path with KerasHub's roundings:
    # hidden states and caches equal to the general block's, inside the sliding window, at its edge
    # and past it, with a row that keeps its cache entry.
    done = run_python(STEP, str(tiny_preset), "bfloat16")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["lean_step"]
    assert all(result["equal"]), result["errors"]
    assert all(result["kept"])


ALL_INT4 = r"""
import json, sys
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras.quantizers import Int4QuantizationConfig
from keras_gemma_app.decoding import _model_adapter
pipe = kga.load(sys.argv[1], dtype="bfloat16")
# Every layer at int4, the tied embedding included: Keras's own quantize(), as presets of earlier
# versions of the app hold it.
pipe.causal_lm.backbone.quantize("int4", config=Int4QuantizationConfig(block_size=32))
adapter = _model_adapter(pipe.causal_lm)
ids = torch.randint(4, 300, (1, 12), generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    hidden, _ = adapter.forward(ids, adapter.empty_cache(1, 12), 0)
    ours = adapter.logits(hidden).float()
keras_logits = pipe.causal_lm({"token_ids": ids, "padding_mask": torch.ones_like(ids)})
keras_logits = torch.as_tensor(keras_logits.detach()).float()
print(json.dumps({"head": type(adapter.lm_head).__name__, "embedding": pipe.causal_lm.backbone.token_embedding.quantization_mode,
                  "error": float((ours - keras_logits).norm() / keras_logits.norm()),
                  "tokens": len(pipe.completions("hello", max_new_tokens=4)[0].token_ids)}))
"""


def test_a_model_quantized_all_to_int4_still_runs(tiny_preset):
    from conftest import run_python

    done = run_python(ALL_INT4, str(tiny_preset))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The int4 embedding: looked up from its 4-bit rows, the LM head through the packed int4 kernel.
    assert result["embedding"] == "int4" and result["head"] == "PackedLinear"
    # Keras's own forward pass on the same int4 weights, within bfloat16 arithmetic: Keras rounds every
    # activation to bfloat16, the app only the products' inputs (measured 1.6%; a wrong nibble order
    # or scale would be of the logits' own size).
    assert result["error"] < 0.05, result
    assert result["tokens"] == 4
