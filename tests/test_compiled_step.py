"""The compiled one-token step computes what the eager step does, at every position, in one graph."""

import json

STEP = r"""
import json, sys
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app import compiled_step, torch_packed
from keras_gemma_app.decoding import _model_adapter
adapter = _model_adapter(kga.load(sys.argv[1], quantize="int4").causal_lm)
step = compiled_step.CompiledStep(adapter.layers)
torch.manual_seed(0)
errors, cache_errors, untouched = [], [], []
with torch.inference_mode():
    _, cache = adapter.forward(torch.randint(4, 300, (1, 40)), adapter.empty_cache(1, 48), 0)
    # Inside the sliding window (16 here), at its edge and past it.
    for index in (3, 15, 16, 40, 47):
        rope = {}
        for layer in adapter.layers:
            cos, sin = adapter._step_rope_tables(layer, 48)
            rope[layer.rope] = (cos[index], sin[index])
        rows = tuple(rope[layer.rope] for layer in adapter.layers)
        x = torch_packed.embedding_rows(adapter.embedding, torch.tensor([[7]]), adapter.dtype) * adapter._embedding_scale
        eager_cache = tuple((k.clone(), v.clone()) for k, v in cache)
        compiled_cache = tuple((k.clone(), v.clone()) for k, v in cache)
        eager = adapter._step_layers(x, eager_cache, index, None, rows)
        compiled = step(x, compiled_cache, index, rows)
        errors.append(float((compiled - eager).norm() / eager.norm()))
        cache_errors.append(max(float((a - b).norm() / b.norm()) for pair, other in zip(compiled_cache, eager_cache)
                                for a, b in zip(pair, other)))
        untouched.append(all(torch.equal(a[:, :index], b[:, :index]) and torch.equal(a[:, index + 1:], b[:, index + 1:])
                             for pair, old in zip(compiled_cache, cache) for a, b in zip(pair, old)))
from torch._dynamo.utils import counters
print(json.dumps({"applies": compiled_step.applies(adapter.layers), "errors": errors, "cache_errors": cache_errors,
                  "untouched": untouched, "graphs": counters["stats"]["unique_graphs"]}))
"""


def test_compiled_step_computes_the_eager_step_at_every_position(tiny_preset, tmp_path):
    from conftest import run_python

    # A fresh compile cache: a cached graph from an earlier torch build must not stand in for this one.
    done = run_python(STEP, str(tiny_preset), env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["applies"]
    # Fused float32 loops sum in another order, and a product's bfloat16 input may round the other way:
    # close, not equal. Masked entries (later positions, outside the window) count for nothing.
    assert max(result["errors"]) < 1e-2, result
    assert max(result["cache_errors"]) < 1e-2, result
    # Only the entry at the position is written.
    assert all(result["untouched"]), result
    # One graph for every position of a cache length.
    assert result["graphs"] == 1, result


def test_applies_only_to_quantized_blocks():
    from keras_gemma_app import compiled_step, torch_packed

    class Block:
        def __init__(self, packed, exact_step):
            self.packed, self.exact_step = packed, exact_step

    assert compiled_step.applies([Block(True, False), Block(True, False)])
    # bfloat16 weights keep the eager exact step; float32 ones the general block.
    assert not compiled_step.applies([Block(True, False), Block(False, True)])
    assert not compiled_step.applies([Block(False, False)])
    assert not compiled_step.applies([])
