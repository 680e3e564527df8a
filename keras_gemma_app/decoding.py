"""Token-by-token decoding with compiled steps: the core of streaming and generation.

:class:`Decoder` runs a KerasHub Gemma ``CausalLM`` one token at a time and
yields a :class:`Step` for the whole batch as soon as each token exists, at the
speed of KerasHub's own compiled ``generate``:

- The prompts are right-padded and prefilled in one forward pass that fills a
  static key/value cache. Prompt and cache lengths are rounded up to buckets
  (:func:`bucket`), so a new prompt length reuses the compiled functions.
- Then one compiled step per token. On JAX the prefill and the step are
  ``jax.jit`` functions that take the model variables as explicit state (a
  ``keras.StatelessScope``, as KerasHub does); the next step is dispatched
  before the current token is read, so host work overlaps the computation. On
  TensorFlow they are ``tf.function(jit_compile=True)``. On torch they run
  eagerly under ``torch.inference_mode``.
- The batch moves in lockstep, as in KerasHub: decoding starts after the
  shortest prompt, and a longer prompt's remaining tokens are fed in (not
  sampled) until its own first new token. Greedy decoding therefore gives the
  tokens of ``causal_lm.generate``.

Greedy, top-k, top-p and random sampling stream (through the ``keras_hub``
sampler that the settings build); beam and contrastive search do not.

Importing this module does not import keras.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator, Sequence

import numpy as np

from keras_gemma_app.errors import SettingsError
from keras_gemma_app.samplers import Beam, Contrastive, Sampler

_PAD = 0


def bucket(length: int) -> int:
    """Rounds a sequence length up to a compiled shape.

    Powers of two from 16 to 1024, then multiples of 1024; a prompt or cache
    whose length falls in a bucket already seen reuses its compiled functions.
    """
    size = 16
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
    """Whether :class:`Decoder` can run this KerasHub model (Gemma 1, 2 and 3)."""
    try:
        _model_adapter(causal_lm)
    except NotImplementedError:
        return False
    return True


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
    import keras_hub

    if isinstance(causal_lm, keras_hub.models.Gemma3CausalLM):
        return _Gemma3Text(causal_lm)
    if isinstance(causal_lm, keras_hub.models.GemmaCausalLM):
        return _Gemma(causal_lm)
    raise NotImplementedError(
        f"Token streaming supports Gemma 1, 2 and 3 causal LMs, received a "
        f"{type(causal_lm).__name__}; use causal_lm.generate() for it."
    )


# --- The two computations, written once in keras ops. ---


def _pick(sampler, logits, tokens, prompt_mask, position):
    """Samples one token per row; rows whose prompt covers ``position`` keep their prompt token."""
    from keras import ops

    batch = ops.shape(tokens)[0]
    probabilities = sampler.compute_probabilities(logits)
    sampled = ops.cast(sampler.get_next_token(probabilities), "int32")
    forced = ops.slice(tokens, [0, position], [batch, 1])[:, 0]
    keep = ops.slice(prompt_mask, [0, position], [batch, 1])[:, 0]
    return ops.where(keep, forced, sampled)


def _computations(model, sampler):
    from keras import ops

    def prefill(prompt_tokens, tokens, prompt_mask, last):
        """Fills the cache with the prompts; returns the token after position ``last``."""
        batch, length = ops.shape(tokens)
        cache = model.empty_cache(batch, length)
        hidden, cache = model.forward(prompt_tokens, cache, 0, padding_mask=prompt_mask)
        hidden = ops.slice(hidden, [0, last, 0], [batch, 1, ops.shape(hidden)[2]])
        logits = model.logits(hidden)[:, 0, :]
        return _pick(sampler, logits, tokens, prompt_mask, last + 1), cache

    def step(token, index, cache, tokens, prompt_mask):
        """Feeds ``token`` at position ``index``; returns the token at ``index + 1``."""
        batch = ops.shape(tokens)[0]
        update_mask = None
        if model.uses_update_mask:
            # Prompt positions keep the keys and values the prefill wrote.
            update_mask = ops.logical_not(ops.slice(prompt_mask, [0, index], [batch, 1]))
        hidden, cache = model.forward(token[:, None], cache, index, update_mask=update_mask)
        logits = model.logits(hidden)[:, 0, :]
        return _pick(sampler, logits, tokens, prompt_mask, index + 1), cache

    return prefill, step


# --- Backend programs: compile the two computations and run them. ---


class _JaxProgram:
    """``jax.jit`` prefill and step; model and sampler variables passed as explicit state."""

    pipelined = True  # jax dispatches asynchronously: queue step t+1 before reading token t

    def __init__(self, model, sampler):
        import jax
        import keras

        causal_lm = model.causal_lm
        self._trainable = causal_lm.trainable_variables
        self._non_trainable = causal_lm.non_trainable_variables
        self._sampler_variables = sampler.variables
        prefill, step = _computations(model, sampler)

        def stateless(function):
            def run(weights, rng, *args):
                trainable, non_trainable = weights
                mapping = itertools.chain(
                    zip(self._trainable, trainable),
                    zip(self._non_trainable, non_trainable),
                    zip(self._sampler_variables, rng),
                )
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    outputs = function(*args)
                new_rng = []
                for variable, old in zip(self._sampler_variables, rng):
                    new = scope.get_current_value(variable)
                    new_rng.append(old if new is None else new)
                return outputs, new_rng

            return run

        self._prefill = jax.jit(stateless(prefill))
        # The cache is donated: each step updates it in place.
        self._step = jax.jit(stateless(step), donate_argnums=(4,))
        self._weights = None
        self._rng = []

    def start(self, rng_values, tokens, prompt_mask):
        import jax.numpy as jnp

        self._weights = (
            [v.value for v in self._trainable],
            [v.value for v in self._non_trainable],
        )
        self._rng = [jnp.asarray(value) for value in rng_values]
        self._tokens = jnp.asarray(tokens)
        self._prompt_mask = jnp.asarray(prompt_mask)

    def prefill(self, prompt_tokens, last):
        (token, cache), self._rng = self._prefill(
            self._weights, self._rng, prompt_tokens, self._tokens, self._prompt_mask, np.int32(last)
        )
        return token, cache

    def step(self, token, index, cache):
        (token, cache), self._rng = self._step(
            self._weights, self._rng, token, np.int32(index), cache, self._tokens, self._prompt_mask
        )
        return token, cache

    def rng_values(self):
        return [np.asarray(value) for value in self._rng]

    def finish(self):
        self._weights = self._tokens = self._prompt_mask = None

    @staticmethod
    def to_numpy(token):
        return np.asarray(token)


class _TensorFlowProgram:
    """``tf.function`` prefill and step, XLA-compiled; variables are captured."""

    pipelined = False

    def __init__(self, model, sampler, jit_compile: bool = True):
        import tensorflow as tf

        prefill, step = _computations(model, sampler)
        self._prefill = tf.function(prefill, jit_compile=jit_compile)
        self._step = tf.function(step, jit_compile=jit_compile)
        self._sampler_variables = sampler.variables

    def start(self, rng_values, tokens, prompt_mask):
        import tensorflow as tf

        for variable, value in zip(self._sampler_variables, rng_values):
            variable.assign(value)
        self._tokens = tf.constant(tokens)
        self._prompt_mask = tf.constant(prompt_mask)

    def prefill(self, prompt_tokens, last):
        import tensorflow as tf

        return self._prefill(tf.constant(prompt_tokens), self._tokens, self._prompt_mask, tf.constant(last, tf.int32))

    def step(self, token, index, cache):
        import tensorflow as tf

        return self._step(token, tf.constant(index, tf.int32), cache, self._tokens, self._prompt_mask)

    def rng_values(self):
        return [np.asarray(v.numpy()) for v in self._sampler_variables]

    def finish(self):
        self._tokens = self._prompt_mask = None

    @staticmethod
    def to_numpy(token):
        return token.numpy()


class _TorchProgram:
    """Eager prefill and step under ``torch.inference_mode``."""

    pipelined = False

    def __init__(self, model, sampler):
        self._prefill, self._step = _computations(model, sampler)
        self._sampler_variables = sampler.variables

    def start(self, rng_values, tokens, prompt_mask):
        import torch
        from keras import ops

        for variable, value in zip(self._sampler_variables, rng_values):
            variable.assign(value)
        with torch.inference_mode():
            self._tokens = ops.convert_to_tensor(tokens)
            self._prompt_mask = ops.convert_to_tensor(prompt_mask)

    def prefill(self, prompt_tokens, last):
        import torch
        from keras import ops

        with torch.inference_mode():
            return self._prefill(ops.convert_to_tensor(prompt_tokens), self._tokens, self._prompt_mask, int(last))

    def step(self, token, index, cache):
        import torch

        with torch.inference_mode():
            return self._step(token, int(index), cache, self._tokens, self._prompt_mask)

    def rng_values(self):
        from keras import ops

        return [ops.convert_to_numpy(v.value) for v in self._sampler_variables]

    def finish(self):
        self._tokens = self._prompt_mask = None

    @staticmethod
    def to_numpy(token):
        return token.detach().cpu().numpy()


# --- The decoder. ---


def _check_prompts(prompts_token_ids) -> list[list[int]]:
    if isinstance(prompts_token_ids, np.ndarray):
        prompts_token_ids = prompts_token_ids.tolist()
    rows = [list(row) for row in prompts_token_ids]
    if not rows:
        raise SettingsError("Expected at least one tokenized prompt, received none.")
    for row in rows:
        if not row:
            raise SettingsError("Expected a tokenized prompt with at least one token (<bos>), received an empty one.")
        for token in row:
            if isinstance(token, (bool, np.bool_)) or not isinstance(token, (int, np.integer)) or token < 0:
                raise SettingsError(f"Expected token ids (integers >= 0), received {token!r}.")
    return [[int(t) for t in row] for row in rows]


def _check_max_new_tokens(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise SettingsError(f"max_new_tokens must be an integer >= 1, but is {value!r}.")
    return int(value)


class Decoder:
    """Decodes a batch of tokenized prompts one compiled step at a time.

    Compiled functions are cached on the decoder, keyed by the sampler's
    strategy (not its seed) and by the bucketed shapes, so later calls with
    other prompts of similar length start at once.

    Args:
        causal_lm: a loaded KerasHub ``Gemma3CausalLM`` or ``GemmaCausalLM``.

    Raises:
        NotImplementedError: another kind of model (see :func:`supports_model`).

    Example:
        >>> decoder = Decoder(pipe.causal_lm)
        >>> prompt = [2] + pipe.tokenizer("The capital of France is").tolist()
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
        self._rng_state: dict[Sampler, list] = {}
        self._tf_jit_compile = True

    def _program(self, settings: Sampler):
        import keras

        keras_sampler = settings.build()
        config = {k: v for k, v in keras_sampler.get_config().items() if k != "seed"}
        key = (type(keras_sampler).__name__, tuple(sorted(config.items())), keras.config.dtype_policy().name)
        if settings not in self._rng_state:
            self._rng_state[settings] = [keras.ops.convert_to_numpy(v.value) for v in keras_sampler.variables]
        program = self._programs.get(key)
        if program is None:
            if self.backend == "jax":
                program = _JaxProgram(self._model, keras_sampler)
            elif self.backend == "tensorflow":
                program = _TensorFlowProgram(self._model, keras_sampler, self._tf_jit_compile)
            elif self.backend == "torch":
                program = _TorchProgram(self._model, keras_sampler)
            else:
                raise NotImplementedError(f"Token streaming runs on jax, tensorflow and torch, not {self.backend!r}.")
            self._programs[key] = program
        return program

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
        stops = frozenset(int(t) for t in stop_token_ids)
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
        tokens: list[list[int]] = []
        reasons: list[str | None] = []
        for step in steps:
            if not tokens:
                tokens = [[] for _ in step.token_ids]
                reasons = [None] * len(tokens)
            for row, reason in enumerate(step.finish_reasons):
                if step.emitted[row] and reason != "stop":
                    tokens[row].append(int(step.token_ids[row]))
                if reason is not None:
                    reasons[row] = reason
        return [Decoded(tuple(t), r or "length") for t, r in zip(tokens, reasons)]

    def _run(self, rows, max_new_tokens, settings, stops) -> Iterator[Step]:
        start = time.perf_counter()
        program = self._program(settings)
        batch = len(rows)
        lengths = np.array([len(row) for row in rows])
        shortest, longest = int(lengths.min()), int(lengths.max())
        cache_length = bucket(longest + max_new_tokens)
        tokens = np.full((batch, cache_length), _PAD, dtype="int32")
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        prompt_mask = np.arange(cache_length)[None, :] < lengths[:, None]
        prompt_tokens = tokens[:, : bucket(longest)]

        program.start(self._rng_state[settings], tokens, prompt_mask)
        counts = np.zeros(batch, dtype=int)
        finished = np.zeros(batch, dtype=bool)
        try:
            token, cache = program.prefill(prompt_tokens, shortest - 1)
            position = shortest  # the position of `token` in each row
            index = 0
            while True:
                emits = ~finished & (position >= lengths)
                surely_done = finished | (emits & (counts + 1 >= max_new_tokens))
                queued = None
                if program.pipelined and not surely_done.all():
                    queued = program.step(token, position, cache)
                values = program.to_numpy(token).astype("int32")
                reasons: list[str | None] = [None] * batch
                for row in np.flatnonzero(emits):
                    counts[row] += 1
                    if int(values[row]) in stops:
                        reasons[row] = "stop"
                    elif counts[row] >= max_new_tokens:
                        reasons[row] = "length"
                yield Step(
                    token_ids=np.where(emits, values, _PAD).astype("int32"),
                    emitted=emits,
                    finished=finished.copy(),
                    finish_reasons=tuple(reasons),
                    index=index,
                    elapsed=time.perf_counter() - start,
                )
                finished = finished | np.array([reason is not None for reason in reasons])
                if finished.all():
                    break
                token, cache = queued if queued is not None else program.step(token, position, cache)
                position += 1
                index += 1
        finally:
            if getattr(settings, "seed", 0) is None:
                # Unseeded sampling continues its random stream on the next call.
                self._rng_state[settings] = program.rng_values()
            program.finish()
