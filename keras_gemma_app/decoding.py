"""Token-by-token decoding with compiled steps: the core of streaming and generation.

:class:`Decoder` runs a KerasHub Gemma ``CausalLM`` one token at a time and
yields a :class:`Step` for the whole batch as soon as each token exists, at the
speed of KerasHub's own compiled ``generate``:

- The prompts are right-padded and prefilled in one forward pass that fills a
  static key/value cache. Prompt and cache lengths are rounded up to buckets
  (:func:`bucket`), so a new prompt length reuses the compiled functions.
- Then the decode steps, compiled, each Step handed over as soon as its tokens
  exist. JAX: the prefill is one ``jax.jit`` function and the decode loop
  another (a ``lax.while_loop`` that passes each token to the host through an
  ordered ``io_callback``, run in a background thread); model and sampler
  variables are explicit arguments through a ``keras.StatelessScope``, as in
  KerasHub. TensorFlow: a ``tf.function`` per prefill and per step, XLA-compiled
  for float32 Gemma 3 (:mod:`keras_gemma_app.xla_gemma3`), graphs otherwise.
  torch: eager steps under ``torch.inference_mode``, in plain torch for Gemma 3
  (:mod:`keras_gemma_app.torch_gemma3`), through the Keras layers otherwise.
  An eager adapter may also find greedy tokens without the full logits
  (``greedy_tokens``, prepared per call by ``prepare_greedy``: torch bfloat16's
  screened LM head, :mod:`keras_gemma_app.screened_head`).
- The batch moves in lockstep, as in KerasHub: decoding starts after the
  shortest prompt, and a longer prompt's remaining tokens are fed in (not
  sampled) until its own first new token. Greedy decoding therefore gives the
  tokens of ``causal_lm.generate``.

Greedy, top-k, top-p and random sampling stream (through the ``keras_hub``
sampler that the settings build); beam and contrastive search do not.

Importing this module does not import keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np

from keras_gemma_app import float32_kernels
from keras_gemma_app.errors import SettingsError
from keras_gemma_app.samplers import Beam, Contrastive, Greedy, Sampler

_PAD = 0
_MAX_SETTINGS = 64  # sampler settings whose random state a Decoder remembers


def bucket(length: int) -> int:
    """Rounds a sequence length up to a compiled shape.

    48, then powers of two from 64 to 1024, then multiples of 1024; a prompt or
    cache whose length falls in a bucket already seen reuses its compiled
    functions. (The 48-row floor keeps XLA on the CPU matrix kernels that
    KerasHub's prefill of a longer padded sequence uses: with fewer rows XLA:CPU
    sums a 640-wide product in another order, and bfloat16 tokens could part
    from KerasHub's. A 16-token prompt prefilled at 48 rows rather than 64
    reaches its first token ~15 ms sooner on JAX.)
    """
    if length <= 48:
        return 48
    size = 64
    while size < length and size < 1024:
        size *= 2
    if length > size:
        size = -(-length // 1024) * 1024
    return size


@dataclasses.dataclass(frozen=True)
class Step:
    """One decode step for the whole batch.

    Attributes:
        token_ids: ``(batch,)`` int32, the new token of each row; ``0`` where
            ``emitted`` is False.
        emitted: ``(batch,)`` bool, whether ``token_ids[row]`` is a new token
            of that row. A stop token is emitted (and ends its row). False for
            a row that has finished, or whose longer prompt is still being
            read (the batch moves in lockstep from the shortest prompt).
        finished: ``(batch,)`` bool, the row had already ended before this step.
        finish_reasons: per row, ``"stop"`` (a stop token) or ``"length"``
            (``max_new_tokens`` reached) on the step that ends the row, else None.
        index: the step number, 0 for the token computed by the prefill.
        elapsed: seconds since decoding started, prefill included.
    """

    token_ids: np.ndarray
    emitted: np.ndarray
    finished: np.ndarray
    finish_reasons: tuple[str | None, ...]
    index: int
    elapsed: float


@dataclasses.dataclass(frozen=True)
class Decoded:
    """One row's result of :meth:`Decoder.generate`.

    Attributes:
        token_ids: the new tokens, without the stop token.
        finish_reason: ``"stop"`` or ``"length"``.
    """

    token_ids: tuple[int, ...]
    finish_reason: str


def supports_sampler(sampler: Sampler) -> bool:
    """Whether :class:`Decoder` can decode with these sampler settings."""
    return isinstance(sampler, Sampler) and not isinstance(sampler, (Beam, Contrastive))


def supports_model(causal_lm) -> bool:
    """Whether :class:`Decoder` can run this KerasHub model (Gemma 1, 2 and 3).

    A check of the model's class: building the model pass to find out would cost what
    :class:`Decoder` pays once (packing the weights: ~0.3 s for Gemma 3 270M in bfloat16 on torch).
    """
    import keras_hub

    return isinstance(causal_lm, (keras_hub.models.Gemma3CausalLM, keras_hub.models.GemmaCausalLM))


# --- Model adapters: a cached forward pass that stops before the logits. ---


class _Gemma3Text:
    """``Gemma3CausalLM.call_with_cache`` for text, split into forward and logits."""

    def __init__(self, causal_lm):
        self.causal_lm = causal_lm
        self.backbone = causal_lm.backbone
        self.uses_update_mask = True

    def empty_cache(self, batch: int, length: int):
        from keras import ops

        backbone = self.backbone
        shape = (batch, length, backbone.num_key_value_heads, backbone.head_dim)
        dtype = self.causal_lm.compute_dtype
        return tuple(
            (ops.zeros(shape, dtype=dtype), ops.zeros(shape, dtype=dtype))
            for _ in range(backbone.num_layers)
        )

    def forward(self, token_ids, cache, index, padding_mask=None, update_mask=None):
        from keras import ops

        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = x * ops.cast(ops.sqrt(backbone.hidden_dim), x.dtype)
        caches = []
        for layer, layer_cache in zip(backbone.transformer_layers, cache):
            x, layer_cache = layer(
                x,
                cache=layer_cache,
                cache_update_index=index,
                padding_mask=padding_mask,
                cache_update_mask=update_mask,
            )
            caches.append(layer_cache)
        return backbone.layer_norm(x), tuple(caches)

    def logits(self, hidden):
        return self.backbone.token_embedding(hidden, reverse=True)


class _Gemma:
    """``GemmaCausalLM.call_with_cache`` (Gemma 1 and 2), split into forward and logits."""

    def __init__(self, causal_lm):
        self.causal_lm = causal_lm
        self.backbone = causal_lm.backbone
        self.uses_update_mask = False

    def empty_cache(self, batch: int, length: int):
        from keras import ops

        backbone = self.backbone
        shape = (batch, backbone.num_layers, 2, length, backbone.num_key_value_heads, backbone.head_dim)
        return ops.zeros(shape, dtype=self.causal_lm.compute_dtype)

    def forward(self, token_ids, cache, index, padding_mask=None, update_mask=None):
        from keras import ops

        # Right padding: causality alone keeps prompts from seeing the padding.
        backbone = self.backbone
        x = backbone.token_embedding(token_ids)
        x = x * ops.cast(ops.sqrt(backbone.hidden_dim), x.dtype)
        caches = []
        for i, layer in enumerate(backbone.transformer_layers):
            x, layer_cache = layer(x, cache=cache[:, i, ...], cache_update_index=index)
            caches.append(layer_cache)
        return backbone.layer_norm(x), ops.stack(caches, axis=1)

    def logits(self, hidden):
        return self.backbone.token_embedding(hidden, reverse=True)


def _model_adapter(causal_lm):
    import keras
    import keras_hub

    if keras.config.backend() == "torch":
        from keras_gemma_app import torch_gemma3

        if torch_gemma3.supports(causal_lm):
            return torch_gemma3.TorchGemma3(causal_lm)
    if keras.config.backend() in ("tensorflow", "jax"):
        from keras_gemma_app import xla_gemma3

        # Quantized weights on both; float32 and bfloat16 on TensorFlow (JAX compiles KerasHub's own
        # layers well).
        if xla_gemma3.supports(causal_lm, quantized=True) or (
                keras.config.backend() == "tensorflow" and xla_gemma3.supports(causal_lm)):
            return xla_gemma3.XlaGemma3(causal_lm)
    if isinstance(causal_lm, keras_hub.models.Gemma3CausalLM):
        return _Gemma3Text(causal_lm)
    if isinstance(causal_lm, keras_hub.models.GemmaCausalLM):
        return _Gemma(causal_lm)
    raise NotImplementedError(
        f"Token streaming supports Gemma 1, 2 and 3 causal LMs, received a "
        f"{type(causal_lm).__name__}; use causal_lm.generate() for it."
    )


# --- The two computations, written once in keras ops. ---


def _pick(sampler, logits, tokens, prompt_mask, position, past_prompts=False, greedy=False, sampled=None):
    """Samples one token per row; rows whose prompt covers ``position`` keep their prompt token
    (none do when ``past_prompts``). ``greedy``: ``sampler`` is KerasHub's greedy sampler.
    ``sampled``: the greedy tokens, found without the logits (then None)."""
    from keras import ops

    if sampled is not None:
        sampled = ops.cast(sampled, "int32")
    elif greedy:
        # The largest logit is the largest probability: no softmax over the vocabulary (262k for
        # Gemma 3; ~0.2 ms a token on a CPU). In float32, the same index (bfloat16 widens exactly):
        # torch's argmax over 262k bfloat16 values takes 0.94 ms, over float32 0.27 with the cast.
        sampled = ops.cast(_first_largest(ops.cast(logits, "float32")), "int32")
    else:
        sampled = ops.cast(sampler.get_next_token(sampler.compute_probabilities(logits)), "int32")
    if past_prompts:
        return sampled
    # A gather, not a slice: XLA (TensorFlow) would compile a slice anew for every position.
    forced = ops.take(tokens, position, axis=1)
    keep = ops.take(prompt_mask, position, axis=1)
    return ops.where(keep, forced, sampled)


# Logits a block of torch_first_largest reads (a vocabulary not a multiple of it: plain argmax).
_ARGMAX_BLOCK = 512


def _first_largest(logits):
    """``argmax(logits, axis=-1)``; on torch through :func:`torch_first_largest`."""
    import keras
    from keras import ops

    if keras.config.backend() == "torch" and len(logits.shape) == 2 and logits.shape[-1] % _ARGMAX_BLOCK == 0:
        return torch_first_largest(logits)
    return ops.argmax(logits, axis=-1)


def torch_first_largest(logits):
    """The index of each row's first largest value, as ``torch.argmax`` gives it, in two short passes:
    torch's argmax over 262k float32 values runs on one core at ~1 value a nanosecond (0.22 ms),
    its largest value of each block of :data:`_ARGMAX_BLOCK` in vector instructions. The first block
    holding the row's largest value, then the first largest in that block (0.03 ms)."""
    import torch

    rows = logits.shape[0]
    blocks = logits.reshape(rows, -1, _ARGMAX_BLOCK)
    block = torch.argmax(blocks.amax(dim=-1), dim=-1)
    within = torch.argmax(blocks[torch.arange(rows), block], dim=-1)
    return block * _ARGMAX_BLOCK + within


def _computations(model, sampler):
    from keras import ops
    from keras_hub.samplers import GreedySampler

    greedy = type(sampler) is GreedySampler
    # Eager adapters (torch) may find greedy tokens without the whole LM head.
    greedy_tokens = getattr(model, "greedy_tokens", None) if greedy else None

    def head(hidden):
        """(logits, None), or (None, tokens) where the model found the greedy tokens itself."""
        sampled = None if greedy_tokens is None else greedy_tokens(hidden)
        return (model.logits(hidden), None) if sampled is None else (None, sampled)

    def prefill(prompt_tokens, tokens, prompt_mask, last):
        """Fills the cache with the prompts; returns the token after position ``last``."""
        batch, length = ops.shape(tokens)
        cache = model.empty_cache(batch, length)
        hidden, cache = model.forward(prompt_tokens, cache, 0, padding_mask=prompt_mask)
        logits, sampled = head(ops.take(hidden, last, axis=1))
        return _pick(sampler, logits, tokens, prompt_mask, last + 1, greedy=greedy, sampled=sampled), cache

    def step(token, index, cache, tokens, prompt_mask, past_prompts=False):
        """Feeds ``token`` at position ``index``; returns the token at ``index + 1``.

        ``past_prompts``: ``index`` is past every prompt (a Python bool; eager programs only), so no
        row keeps a prompt entry or token and the masks need not be read.
        """
        update_mask = None
        if model.uses_update_mask and not past_prompts:
            # Prompt positions keep the keys and values the prefill wrote.
            update_mask = ops.logical_not(ops.take(prompt_mask, index, axis=1))[:, None]
        hidden, cache = model.forward(token[:, None], cache, index, update_mask=update_mask)
        logits, sampled = head(hidden[:, 0, :])
        return _pick(sampler, logits, tokens, prompt_mask, index + 1, past_prompts, greedy, sampled), cache

    return prefill, step


# --- Host bookkeeping: which rows emit, stop or run out of tokens. ---


class _Tracker:
    """Turns each decoded batch of tokens into a :class:`Step`; knows when all rows ended."""

    def __init__(self, lengths: np.ndarray, max_new_tokens: int, stops: frozenset[int], start: float):
        self.lengths = lengths
        self.max_new_tokens = max_new_tokens
        self.stops = stops
        self.start = start
        self.counts = np.zeros(len(lengths), dtype=int)
        self.finished = np.zeros(len(lengths), dtype=bool)
        self.index = 0
        self.done = False

    def record(self, values: np.ndarray, position: int) -> Step:
        """Books the tokens at ``position`` (one per row) and returns their Step."""
        values = np.asarray(values).astype("int32").reshape(-1)
        emits = ~self.finished & (position >= self.lengths)
        reasons: list[str | None] = [None] * len(values)
        for row in np.flatnonzero(emits):
            self.counts[row] += 1
            if int(values[row]) in self.stops:
                reasons[row] = "stop"
            elif self.counts[row] >= self.max_new_tokens:
                reasons[row] = "length"
        step = Step(
            token_ids=np.where(emits, values, _PAD).astype("int32"),
            emitted=emits,
            finished=self.finished.copy(),
            finish_reasons=tuple(reasons),
            index=self.index,
            elapsed=time.perf_counter() - self.start,
        )
        self.finished = self.finished | np.array([reason is not None for reason in reasons])
        self.done = bool(self.finished.all())
        self.index += 1
        return step


# --- Backend programs: compile the computations and run them. ---


class _Run:
    """The state one JAX decode loop reports to through its host callback."""

    def __init__(self, tracker: _Tracker):
        self.tracker = tracker
        self.steps: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False


class _JaxProgram:
    """A ``jax.jit`` prefill, then the whole decode loop as one ``jax.jit`` function.

    Each call runs the loop to the end (or until the consumer closes the
    stream), so tokens may be computed ahead of the consumer.

    Model and sampler variables are explicit arguments (a ``keras.StatelessScope``,
    as in KerasHub's generate). The loop is a ``lax.while_loop`` that hands each
    new token to the host through an ordered ``io_callback``; the callback books
    it, queues the Step and answers whether to go on. The loop runs in a
    background thread; the stream reads the queue.

    Why one compiled loop rather than one jitted call per token: XLA:CPU runs
    bfloat16 matmuls in float32, converting the weights; inside a loop the
    conversions are hoisted and done once per call, while per-token calls redo
    them every token (Gemma 3 270M bfloat16: 147 ms per token against 35 ms).
    """

    static_shapes = True

    def __init__(self, model, sampler):
        import jax
        import jax.numpy as jnp
        import keras
        from jax.experimental import io_callback

        causal_lm = model.causal_lm
        trainable = causal_lm.trainable_variables
        non_trainable = causal_lm.non_trainable_variables
        sampler_variables = sampler.variables
        self._variables = (trainable, non_trainable, sampler_variables)
        prefill, step = _computations(model, sampler)
        # The hoisted conversions make a float32 copy of every weight before the
        # first loop token (~1 s for Gemma 3 270M, most of it the embedding).
        # Tying the embedding matrix (tied LM head, the largest weight) to the loop
        # position keeps its conversion in the loop, fused into the LM-head
        # product: no copy, and each token is faster (35 against 42 ms).
        embedding = model.backbone.token_embedding.embeddings
        keep_in_loop = embedding if embedding.dtype in ("bfloat16", "float16") else None
        # The prefill multiplies 16-bit kernels through float32 copies: the same values, without
        # converting every kernel at each call (Gemma 3 270M, 16-token prompt: ~185 -> ~120 ms); in
        # float32, through copies of the kernels XLA would transpose at each call (~140 -> ~120 ms).
        # The loop keeps its own conversion, hoisted: given the copies it ran ~6% slower a token.
        self._kernels = float32_kernels.for_prefill(model)
        self._runs: dict[int, _Run] = {}
        self._run_ids = itertools.count()

        def scope(weights, rng):
            mapping = itertools.chain(
                zip(trainable, weights[0]), zip(non_trainable, weights[1]), zip(sampler_variables, rng)
            )
            return keras.StatelessScope(state_mapping=mapping)

        def updated(scope, rng):
            values = [scope.get_current_value(v) for v in sampler_variables]
            return [old if new is None else new for new, old in zip(values, rng)]

        def run_prefill(weights, copies, rng, prompt_tokens, tokens, prompt_mask, last):
            products = self._kernels.computing(copies) if copies else contextlib.nullcontext()
            with scope(weights, rng) as state, products:
                token, cache = prefill(prompt_tokens, tokens, prompt_mask, last)
            return token, cache, updated(state, rng)

        def host(run_id, token, position):
            run = self._runs[int(run_id)]
            run.steps.put(run.tracker.record(token, int(position)))
            return np.bool_(not (run.tracker.done or run.cancelled))

        def run_loop(weights, rng, token, cache, tokens, prompt_mask, position, run_id):
            last_position = tokens.shape[1] - 1

            def cond(carry):
                _, _, position, _, keep = carry
                return keep & (position < last_position)

            def body(carry):
                token, cache, position, rng, _ = carry
                trainable_values = [
                    jax.lax.optimization_barrier((value, position))[0] if variable is keep_in_loop else value
                    for variable, value in zip(trainable, weights[0])
                ]
                with scope((trainable_values, weights[1]), rng) as state:
                    token, cache = step(token, position, cache, tokens, prompt_mask)
                rng = updated(state, rng)
                keep = io_callback(
                    host, jax.ShapeDtypeStruct((), jnp.bool_), run_id, token, position + 1, ordered=True
                )
                return token, cache, position + 1, rng, keep

            carry = (token, cache, position, rng, jnp.bool_(True))
            return jax.lax.while_loop(cond, body, carry)[3]

        self._prefill = jax.jit(run_prefill)
        self._loop = jax.jit(run_loop)

    def _weights(self):
        trainable, non_trainable, _ = self._variables
        return ([v.value for v in trainable], [v.value for v in non_trainable])

    def decode(self, rng_values, tokens, prompt_mask, prompt_tokens, tracker):
        """Yields the Steps of one call; returns the sampler state at the end."""
        import jax.numpy as jnp

        weights = self._weights()
        rng = [jnp.asarray(value) for value in rng_values]
        tokens = jnp.asarray(tokens)
        prompt_mask = jnp.asarray(prompt_mask)
        position = int(tracker.lengths.min()) - 1
        copies = [] if self._kernels is None else self._kernels.values
        token, cache, rng = self._prefill(weights, copies, rng, prompt_tokens, tokens, prompt_mask,
                                          np.int32(position))
        first = tracker.record(np.asarray(token), position + 1)
        if tracker.done:
            yield first
            return [np.asarray(v) for v in rng]

        run_id = next(self._run_ids)
        run = self._runs[run_id] = _Run(tracker)
        outcome: dict = {}

        def loop():
            try:
                final = self._loop(weights, rng, token, cache, tokens, prompt_mask, np.int32(position + 1), np.int32(run_id))
                outcome["rng"] = [np.asarray(v) for v in final]
            except BaseException as error:  # handed to the consuming thread
                outcome["error"] = error
            finally:
                run.steps.put(None)

        thread = threading.Thread(target=loop, name="keras-gemma-decode", daemon=True)
        thread.start()
        try:
            yield first
            while (step := run.steps.get()) is not None:
                yield step
        finally:
            run.cancelled = True
            thread.join()
            del self._runs[run_id]
        if "error" in outcome:
            raise outcome["error"]
        return outcome["rng"]


class _StepProgram:
    """Runs a prefill, then one step per token, from Python."""

    static_shapes = True

    def decode(self, rng_values, tokens, prompt_mask, prompt_tokens, tracker):
        """Yields the Steps of one call; returns the sampler state at the end."""
        tokens, prompt_mask = self.tensor(tokens), self.tensor(prompt_mask)
        position = int(tracker.lengths.min()) - 1
        rng = rng_values
        self.set_rng(rng)
        token, cache = self.prefill(self.tensor(prompt_tokens), tokens, prompt_mask, position)
        rng = self.get_rng()
        position += 1
        longest = int(tracker.lengths.max())
        while True:
            yield tracker.record(self.to_numpy(token), position)
            if tracker.done:
                break
            # The seed state lives in the sampler's variables: set it per step, so
            # that other streams run in between do not disturb this one.
            self.set_rng(rng)
            token, cache = self.step(token, position, cache, tokens, prompt_mask, past_prompts=position >= longest)
            rng = self.get_rng()
            position += 1
        return rng


class _TensorFlowProgram(_StepProgram):
    """``tf.function`` prefill and step; variables are captured.

    XLA only for a model written for it (:mod:`xla_gemma3`, float32 or
    quantized), graphs otherwise: KerasHub's sliding-window mask slices at the
    cache index with ``tf.slice``, which XLA specializes on its value, so every
    new position compiled again (a first call of 100 s). Warm, XLA steps were
    faster in float32 (61 against 82 ms) but slower in bfloat16 (132 against
    62 ms: XLA converts the weights to float32 at every call).
    """

    def __init__(self, model, sampler):
        import tensorflow as tf

        prefill, step = _computations(model, sampler)
        # XLA where the model is written for it (Gemma 3 in float32 or quantized: one program per
        # shape); a graph otherwise.
        xla = getattr(model, "xla_friendly", False)
        self._prefill = tf.function(prefill, jit_compile=xla)
        self._step = tf.function(step, jit_compile=xla)
        self._sampler_variables = sampler.variables

    def set_rng(self, values):
        for variable, value in zip(self._sampler_variables, values):
            variable.assign(value)

    def get_rng(self):
        return [np.asarray(v.numpy()) for v in self._sampler_variables]

    @staticmethod
    def tensor(values):
        import tensorflow as tf

        return tf.constant(values)

    def prefill(self, prompt_tokens, tokens, prompt_mask, last):
        import tensorflow as tf

        return self._prefill(prompt_tokens, tokens, prompt_mask, tf.constant(last, tf.int32))

    def step(self, token, index, cache, tokens, prompt_mask, past_prompts=False):
        import tensorflow as tf

        # One traced step for every position: the masks are read in the graph.
        return self._step(token, tf.constant(index, tf.int32), cache, tokens, prompt_mask)

    @staticmethod
    def to_numpy(token):
        return token.numpy()


class _TorchProgram(_StepProgram):
    """Eager prefill and step under ``torch.inference_mode``.

    Shapes are exact (nothing to recompile). ``torch.compile`` was tried: over
    two minutes of compiling for Keras layers, repeated recompiles, and no
    faster per token on CPU.
    """

    static_shapes = False

    def __init__(self, model, sampler):
        self._prefill, self._step = _computations(model, sampler)
        self._sampler_variables = sampler.variables

    def set_rng(self, values):
        for variable, value in zip(self._sampler_variables, values):
            variable.assign(value)

    def get_rng(self):
        from keras import ops

        return [ops.convert_to_numpy(v.value) for v in self._sampler_variables]

    @staticmethod
    def tensor(values):
        import torch
        from keras import ops

        with torch.inference_mode():
            return ops.convert_to_tensor(values)

    def prefill(self, prompt_tokens, tokens, prompt_mask, last):
        import torch

        with torch.inference_mode():
            return self._prefill(prompt_tokens, tokens, prompt_mask, int(last))

    def step(self, token, index, cache, tokens, prompt_mask, past_prompts=False):
        import torch

        with torch.inference_mode():
            return self._step(token, int(index), cache, tokens, prompt_mask, past_prompts)

    @staticmethod
    def to_numpy(token):
        return token.detach().cpu().numpy()


# --- The decoder. ---


def _check_token_ids(values, what: str) -> list[int]:
    values = list(values)
    for token in values:
        if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)) or token < 0:
            raise SettingsError(f"Expected {what} to be token ids (integers >= 0), received {token!r}.")
    return [int(token) for token in values]


def _check_prompts(prompts_token_ids) -> list[list[int]]:
    rows = [_check_token_ids(row, "prompt tokens") for row in prompts_token_ids]
    if not rows:
        raise SettingsError("Expected at least one tokenized prompt, received none.")
    if not all(rows):
        raise SettingsError("Expected a tokenized prompt with at least one token (<bos>), received an empty one.")
    return rows


def _check_max_new_tokens(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SettingsError(f"max_new_tokens must be an integer >= 1, but is {value!r}.")
    return int(value)


class Decoder:
    """Decodes a batch of tokenized prompts token by token with compiled functions.

    Compiled functions are cached on the decoder, keyed by the sampling
    strategy (not its seed) and by the bucketed shapes (batch size, prompt
    bucket, cache bucket), so later calls with other prompts of similar length
    start at once. Several streams may be open at once.

    Args:
        causal_lm: a loaded KerasHub ``Gemma3CausalLM`` or ``GemmaCausalLM``.

    Raises:
        NotImplementedError: another kind of model (see :func:`supports_model`).

    Example:
        >>> decoder = Decoder(pipe.causal_lm)
        >>> prompt = [2, *numpy.asarray(pipe.tokenizer("The capital of France is")).tolist()]
        >>> for step in decoder.stream([prompt], max_new_tokens=16, sampler=Greedy(),
        ...                            stop_token_ids=(1, 106)):
        ...     print(pipe.tokenizer.id_to_token(int(step.token_ids[0])))
    """

    def __init__(self, causal_lm):
        import keras

        self.causal_lm = causal_lm
        self.backend = keras.config.backend()
        self._model = _model_adapter(causal_lm)
        self._programs: dict[tuple, object] = {}
        # Per sampler settings: its program key and its random state (seed generators).
        self._settings: dict[Sampler, tuple] = {}
        self._rng_state: dict[Sampler, list] = {}

    def _program(self, settings: Sampler):
        from keras import ops

        if not getattr(self._model, "is_current", lambda: True)():
            # The weights were assigned since the model pass packed its copies of them.
            self._model = _model_adapter(self.causal_lm)
            self._programs.clear()
            self._settings.clear()
            self._rng_state.clear()
        if settings not in self._settings:
            keras_sampler = settings.build()
            config = {k: v for k, v in keras_sampler.get_config().items() if k != "seed"}
            key = (type(keras_sampler).__name__, tuple(sorted(config.items())))
            if key not in self._programs:
                self._programs[key] = self._compile(keras_sampler)
            if len(self._settings) >= _MAX_SETTINGS:
                oldest = next(iter(self._settings))
                del self._settings[oldest], self._rng_state[oldest]
            self._settings[settings] = key
            self._rng_state[settings] = [ops.convert_to_numpy(v.value) for v in keras_sampler.variables]
        return self._programs[self._settings[settings]]

    def _compile(self, keras_sampler):
        """A program for one sampling strategy; its seed state is passed per call."""
        if self.backend == "jax":
            return _JaxProgram(self._model, keras_sampler)
        if self.backend == "tensorflow":
            return _TensorFlowProgram(self._model, keras_sampler)
        if self.backend == "torch":
            return _TorchProgram(self._model, keras_sampler)
        raise NotImplementedError(f"Token streaming runs on jax, tensorflow and torch, not {self.backend!r}.")

    def stream(
        self,
        prompts_token_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        sampler: Sampler,
        stop_token_ids: Sequence[int] = (),
    ) -> Iterator[Step]:
        """Yields one :class:`Step` per decoded position, as soon as its tokens exist.

        Args:
            prompts_token_ids: one list of token ids per prompt, ``<bos>`` included.
            max_new_tokens: the most new tokens per row (>= 1), a stop token included.
            sampler: sampler settings (Greedy, TopK, TopP or Random). A fixed
                seed gives the same tokens on every call; seed None differs.
            stop_token_ids: token ids that end a row.

        Returns:
            An iterator over the steps; it ends when every row has ended.

        Raises:
            SettingsError: an empty prompt, a bad token id or ``max_new_tokens``.
            NotImplementedError: beam or contrastive search.
        """
        rows = _check_prompts(prompts_token_ids)
        max_new_tokens = _check_max_new_tokens(max_new_tokens)
        if not isinstance(sampler, Sampler):
            raise SettingsError(
                f"Expected sampler settings such as Greedy() or TopP(p=0.9), received {type(sampler).__name__}."
            )
        if not supports_sampler(sampler):
            raise NotImplementedError(
                f"The {sampler.name} sampler does not stream; use causal_lm.generate() for it."
            )
        stops = frozenset(_check_token_ids(stop_token_ids, "stop_token_ids"))
        return self._run(rows, max_new_tokens, sampler, stops)

    def generate(
        self,
        prompts_token_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        sampler: Sampler,
        stop_token_ids: Sequence[int] = (),
    ) -> list[Decoded]:
        """Decodes to the end and returns one :class:`Decoded` per prompt.

        Takes the arguments of :meth:`stream`.
        """
        steps = self.stream(
            prompts_token_ids, max_new_tokens=max_new_tokens, sampler=sampler, stop_token_ids=stop_token_ids
        )
        tokens: list[list[int]] = [[] for _ in prompts_token_ids]
        reasons: list[str | None] = [None] * len(tokens)
        for step in steps:
            for row, reason in enumerate(step.finish_reasons):
                if step.emitted[row] and reason != "stop":
                    tokens[row].append(int(step.token_ids[row]))
                if reason is not None:
                    reasons[row] = reason
        return [Decoded(tuple(t), r or "length") for t, r in zip(tokens, reasons)]

    def _run(self, rows, max_new_tokens, settings, stops) -> Iterator[Step]:
        start = time.perf_counter()
        program = self._program(settings)
        prepare = getattr(self._model, "prepare_greedy", None)
        if prepare is not None and isinstance(settings, Greedy):
            prepare(len(rows), max_new_tokens)
        lengths = np.array([len(row) for row in rows])
        longest = int(lengths.max())
        # Compiled programs see bucketed shapes; eager torch needs none.
        size = bucket if program.static_shapes else int
        cache_length = size(longest + max_new_tokens)
        tokens = np.full((len(rows), cache_length), _PAD, dtype="int32")
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        prompt_mask = np.arange(cache_length)[None, :] < lengths[:, None]
        prompt_tokens = tokens[:, : size(longest)]
        tracker = _Tracker(lengths, max_new_tokens, stops, start)
        rng = yield from program.decode(self._rng_state[settings], tokens, prompt_mask, prompt_tokens, tracker)
        if getattr(settings, "seed", 0) is None and rng is not None:
            # Unseeded sampling continues its random stream on the next call.
            self._rng_state[settings] = rng
