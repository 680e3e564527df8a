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
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import _model_adapter
pipe = kga.load(sys.argv[1])
adapter = _model_adapter(pipe.causal_lm)
tokens = pipe.completions("The capital of France is", max_new_tokens=12)[0].token_ids
print(json.dumps({"compiled": hasattr(adapter._block, "_torchdynamo_orig_callable"), "tokens": list(tokens)}))
"""


@pytest.mark.slow
def test_torch_compile_opt_in_gives_the_eager_tokens(real_quantized):
    from conftest import run_python

    preset = str(real_quantized["int4"][0])
    runs = {}
    for flag in (None, "1"):
        done = run_python(COMPILED, preset, env={"KERAS_GEMMA_TORCH_COMPILE": flag}, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[flag] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs[None]["compiled"] is False and runs["1"]["compiled"] is True
    assert runs["1"]["tokens"] == runs[None]["tokens"]
