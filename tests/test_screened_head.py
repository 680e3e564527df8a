"""The screened greedy LM head: the bfloat16 product's argmax exactly, from far fewer rows."""

import json

import pytest

torch = pytest.importorskip("torch")

from keras_gemma_app import channel_balance, dynamic_int8, onednn_linear, screened_head  # noqa: E402

pytestmark = pytest.mark.skipif(not (dynamic_int8.available() and onednn_linear.available()),
                                reason="needs torch's x86 quantized engine and oneDNN bfloat16 products")


def _table(rows=4096, dim=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(rows, dim, generator=generator) * 0.05
    # Channels of very different sizes, as in a real model's hidden state and table.
    table[:, :4] *= 20
    table = table.to(torch.bfloat16)
    # Exact ties (the first index wins) and near ties one bfloat16 step apart.
    table[100] = table[7]
    table[3000] = table[2999]
    table[2001] = table[2000] + table[2000].abs() * 2 ** -7
    return table


def _inputs(table, count, seed=1):
    generator = torch.Generator().manual_seed(seed)
    dim = table.shape[1]
    for i in range(count):
        x = torch.randn(1, dim, generator=generator)
        x[:, 4:8] *= 50  # outlier channels of the input
        if i % 4 == 0:
            # Aligned with a tied row: the largest logits tie exactly.
            x = table[(7, 2999, 2000, 100)[i // 4 % 4]].to(torch.float32)[None] * 3
        yield x.to(torch.bfloat16)


def _exact(table):
    return lambda x, rows: torch.matmul(x, table[rows].T)


@pytest.mark.parametrize("scale", ["balanced", "ones", "wild"])
def test_argmax_equals_the_full_bfloat16_products(scale):
    table = _table()
    full = onednn_linear.PackedBfloat16Linear.from_rows(table)
    inputs = list(_inputs(table, 200))
    if scale == "balanced":
        c = channel_balance.channel_scale(channel_balance.column_peaks(table), torch.cat(inputs[:50]))
    elif scale == "ones":
        c = torch.ones(table.shape[1])
    else:
        # The balance decides only how many rows survive, never the answer.
        c = torch.exp(torch.randn(table.shape[1], generator=torch.Generator().manual_seed(5)) * 3)
    screen = screened_head.ScreenedArgmax(table, c)
    counts = []
    for x in inputs:
        expected = int(torch.argmax(full(x).float()))
        got = screen(x, _exact(table))
        assert got.tolist() == [expected]
        counts.append(screen.last_candidates)
    if scale == "balanced":
        # Most rows are ruled out without their exact product.
        assert sorted(counts)[len(counts) // 2] < table.shape[0] // 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_row_lies_within_its_bound(seed):
    # The proof behind the screen, checked row by row: each bfloat16 logit (the kernel's) lies within
    # its bound of the int8 estimate, for inputs with outlier channels and a rescaled table.
    table = _table(rows=8192, dim=640, seed=seed)
    full = onednn_linear.PackedBfloat16Linear.from_rows(table)
    c = torch.exp(torch.randn(640, generator=torch.Generator().manual_seed(seed)))
    screen = screened_head.ScreenedArgmax(table, c)
    slack = []
    for x in _inputs(table, 10, seed=seed):
        approx, row_term, error_term = screen._screen(x)
        bound = screen._bounds(approx, torch.arange(table.shape[0]), row_term, error_term)
        error = (full(x).float().reshape(-1) - approx).abs()
        assert bool(torch.all(error <= bound))
        slack.append(float((error / bound).max()))
    # Not vacuous: the bound is within a small factor of the worst real error.
    assert max(slack) > 0.05


def test_the_bound_is_tight_where_a_row_lines_up_with_the_input_error():
    # A row along the input's own quantization error: the error of its estimate is nearly all of
    # that term of the bound, so a bound that understated the input error would fail here.
    table = _table(rows=4096, dim=640)
    x = next(_inputs(table, 2, seed=4)).to(torch.float32)
    identity = dynamic_int8.DynamicInt8Linear(torch.eye(640, dtype=torch.int8), torch.ones(640, dtype=torch.float64))
    error = x - identity(x)
    table[500] = (error / error.abs().max() * 0.5).to(torch.bfloat16)
    screen = screened_head.ScreenedArgmax(table, torch.ones(640))
    x = x.to(torch.bfloat16)
    approx, row_term, error_term = screen._screen(x)
    bound = float(screen._bounds(approx[500:501], torch.tensor([500]), row_term, error_term))
    exact = float(torch.matmul(x, table[500:501].T).float())
    assert 0.5 * bound < abs(exact - float(approx[500])) <= bound


def test_ties_go_to_the_first_index_as_argmax_does():
    table = _table()
    screen = screened_head.ScreenedArgmax(table, torch.ones(table.shape[1]))
    x = table[2999].to(torch.float32)[None].to(torch.bfloat16) * 3
    logits = torch.matmul(x, table.T).float()
    assert logits[0, 2999] == logits[0, 3000]
    assert screen(x, _exact(table)).tolist() == [int(torch.argmax(logits))]


def test_sums_that_round_to_the_same_bfloat16_value_tie():
    # Row 10 sums to 256 and row 20 to 257: bfloat16 rounds both to 256, so argmax is row 10, though
    # the screen's own sums (exact here: integers on both int8 grids) put row 20 first.
    table = (torch.randn(64, 64, generator=torch.Generator().manual_seed(3)) * 0.05)
    x = torch.zeros(1, 64)
    x[0, 0], x[0, 1] = 127, 1
    for row, second in ((10, 2), (20, 3)):
        table[row] = 0
        table[row, 0], table[row, 1], table[row, 5] = 2, second, 127
    table, x = table.to(torch.bfloat16), x.to(torch.bfloat16)
    logits = torch.matmul(x, table.T).float()
    assert logits[0, 10] == logits[0, 20] == 256
    screen = screened_head.ScreenedArgmax(table, torch.ones(64))
    assert screen(x, _exact(table)).tolist() == [10]


def test_the_kernel_rounds_to_nearest_as_the_bound_assumes():
    # The bound allows half a bfloat16 step of rounding beyond float32 accumulation error; a kernel
    # that truncated, or summed in bfloat16, would break it.
    table = _table(rows=8192, dim=640)
    full = onednn_linear.PackedBfloat16Linear.from_rows(table)
    for x in _inputs(table, 20):
        got = full(x).double().reshape(-1)
        exact = (x.double() @ table.double().T).reshape(-1)
        magnitude = (x.double().abs() @ table.double().abs().T).reshape(-1)
        allowed = exact.abs() * 2.0 ** -8 + magnitude * 700 * 2.0 ** -24
        assert bool(torch.all((got - exact).abs() <= allowed))


def test_rows_are_taken_one_at_a_time_and_several_rows_each_get_theirs():
    table = _table()
    screen = screened_head.ScreenedArgmax(table, torch.ones(table.shape[1]))
    x = torch.cat(list(_inputs(table, 3)))
    expected = torch.argmax(torch.matmul(x, table.T).float(), dim=-1)
    assert screen(x, _exact(table)).tolist() == expected.tolist()


TRIGGER = r"""
import json, sys
import numpy as np
import keras_gemma_app as kga
kga.use_backend("torch")
pipe = kga.load(sys.argv[1], dtype="bfloat16")
from keras_gemma_app.decoding import Decoder
from keras_gemma_app import torch_gemma3
decoder = Decoder(pipe.causal_lm)
row = [2, *np.asarray(pipe.tokenizer("The capital of France is")).tolist()]
built = []
def tokens(rows, n, sampler=kga.Greedy()):
    out = decoder.generate(rows, max_new_tokens=n, sampler=sampler)
    built.append(decoder._model.screen is not None)
    return [list(d.token_ids) for d in out]
first = tokens([row], 8)                 # a first short call: not worth building
sampled = tokens([row], 8, kga.TopK(k=3, seed=1))  # not greedy: nothing to build
batch = tokens([row, row[:3]], 8)        # several rows: the full product costs what one row's does
second = tokens([row], 8)                # one row again, after other calls: built now
long_decoder = Decoder(pipe.causal_lm)
long_decoder.generate([row], max_new_tokens=torch_gemma3.SCREEN_AFTER_TOKENS, sampler=kga.Greedy())
print(json.dumps({"built": built, "same": first == second, "long_first_call": long_decoder._model.screen is not None,
                  "candidates": decoder._model.screen.last_candidates, "vocabulary": pipe.causal_lm.backbone.vocabulary_size}))
"""


def test_built_for_one_row_greedy_calls_once_it_pays(tiny_preset):
    from conftest import run_python

    done = run_python(TRIGGER, str(tiny_preset))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["built"] == [False, False, False, True]
    assert result["same"]
    assert result["long_first_call"]
    assert 1 <= result["candidates"] <= result["vocabulary"]


SMALL_RAM = r"""
import json, sys
import numpy as np
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import Decoder
pipe = kga.load(sys.argv[1], dtype="bfloat16", force=True)  # past the load's own memory check
decoder = Decoder(pipe.causal_lm)
row = [2, *np.asarray(pipe.tokenizer("The capital of France is")).tolist()]
tokens = [list(decoder.generate([row], max_new_tokens=4, sampler=kga.Greedy())[0].token_ids) for _ in range(3)]
print(json.dumps({"built": decoder._model.screen is not None, "same": tokens[0] == tokens[1] == tokens[2]}))
"""


@pytest.mark.parametrize("memory, built", [("64KB", False), ("8GB", True)])
def test_built_only_while_it_takes_a_small_share_of_the_ram(tiny_preset, memory, built):
    from conftest import run_python

    done = run_python(SMALL_RAM, str(tiny_preset), env={"KERAS_GEMMA_MEMORY": memory})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"built": built, "same": True}


REAL = r"""
import json, sys
import numpy as np
import torch
import keras_gemma_app as kga
kga.use_backend("torch")
from keras_gemma_app.decoding import Decoder
pipe = kga.load(sys.argv[1], dtype="bfloat16")
prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
rows = [[2, *np.asarray(pipe.tokenizer(p)).tolist()] for p in prompts]
def run(screened):
    decoder = Decoder(pipe.causal_lm)
    model = decoder._model
    if screened:
        model.prepare_greedy(1, 10 ** 6)  # built now, as a long call would
    else:
        model._can_screen = False
    seen = []
    greedy = model.greedy_tokens
    def counted(hidden):
        token = greedy(hidden)
        seen.append(None if model.screen is None else model.screen.last_candidates)
        return token
    model.greedy_tokens = counted
    tokens = [list(decoder.generate([r], max_new_tokens=32, sampler=kga.Greedy())[0].token_ids) for r in rows]
    return tokens, seen
screened, seen = run(True)
plain, unseen = run(False)
print(json.dumps({"same": screened == plain, "steps": len(seen), "candidates": seen, "unscreened": unseen,
                  "vocabulary": pipe.causal_lm.backbone.vocabulary_size}))
"""


@pytest.mark.slow
def test_real_model_greedy_tokens_are_the_full_heads(real_preset):
    from conftest import run_python

    # The unscreened bfloat16 path gives KerasHub's tokens (test_torch_gemma3); the screened one
    # must give the same, from a small share of the 262k rows.
    done = run_python(REAL, str(real_preset), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["same"]
    assert result["steps"] == 3 * 32
    assert all(count is not None for count in result["candidates"])
    assert set(result["unscreened"]) == {None}
    counts = sorted(result["candidates"])
    assert counts[len(counts) // 2] < result["vocabulary"] // 50, counts
