"""Building a model whose weights are about to be loaded, without drawing random values first.

KerasHub builds a preset's model from its config, and Keras fills every new
weight from its random initializer before the preset's weights overwrite it.
Building Gemma 3 270M's backbone on 2 CPU cores took 2.0 s (torch), 3.1 s
(TensorFlow) and 3.5 s (JAX) with the random draw, 0.5–0.9 s without, and the
draw grows with the model's size. Inside :func:`skipped`, Keras's random
initializers give zeros instead, which cost next to nothing. Nothing random
survives by accident: Keras refuses to load a preset whose file lacks a weight
the model has (``A total of N objects could not be loaded``), and KerasHub's
checkpoint converters fail on a missing tensor. The switch holds for the whole
process while the block runs (a download included), so it wraps only loads.
"""

from __future__ import annotations

import contextlib


def _random_initializer_classes() -> list[type]:
    """Keras's random initializer classes (and any subclass defined since), base first."""
    try:
        from keras.src.initializers.random_initializers import RandomInitializer
    except ImportError:  # a Keras that moved it: build as usual
        return []
    found, pending = [], [RandomInitializer]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _zeros(self, shape, dtype=None):
    from keras import ops

    return ops.zeros(shape, dtype=dtype)


@contextlib.contextmanager
def skipped():
    """Within this block, weights Keras would draw at random start as zeros."""
    own_calls = {cls: cls.__dict__["__call__"] for cls in _random_initializer_classes()
                 if "__call__" in cls.__dict__}
    try:
        for cls in own_calls:
            cls.__call__ = _zeros
        yield
    finally:
        for cls, call in own_calls.items():
            cls.__call__ = call
