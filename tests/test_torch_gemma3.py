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
ids = torch.tensor(token_ids(pipe.causal_lm, "The capital of France is")[None])
with torch.inference_mode():
    for _ in range(2):  # the second call runs what the first compiled
        hidden, _ = adapter.forward(ids, adapter.empty_cache(1, ids.shape[1]), 0)
        logits = adapter.logits(hidden[:, -1:]).float().numpy().reshape(-1)
print(json.dumps({"compiled": hasattr(adapter._block, "_torchdynamo_orig_callable"),
                  "logits": logits.tolist()}))
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
    eager, compiled = np.array(runs[None]["logits"]), np.array(runs["1"]["logits"])
    # Fused kernels round bfloat16 differently: the same logits to bfloat16 precision, not bit for bit,
    # so greedy text may part at a near tie after a few tokens.
    assert np.argmax(compiled) == np.argmax(eager)
    assert np.max(np.abs(compiled - eager)) < 0.05 * np.max(np.abs(eager))
