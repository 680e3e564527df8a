"""Makes KerasHub's multi-sequence samplers (beam, contrastive) work on Gemma 3.

``BeamSampler`` and ``ContrastiveSampler`` repeat every batch row ``n`` times
(``ops.repeat(x, n, axis=0)``) and call the model's ``next`` function on the
enlarged batch. Gemma 3's ``next`` slices its *original* padding mask with the
enlarged batch size and fails. Here ``next`` is called once per repeat on
batch-sized rows and the results are interleaved back, which gives the same
values the enlarged call would.
"""

from __future__ import annotations

import functools


def _grouped_next(next_fn, batch_size: int):
    from keras import ops, tree

    def call(prompt, cache, index):
        rows = ops.shape(prompt)[0]
        group = rows // batch_size
        if group <= 1:
            return next_fn(prompt, cache, index)
        parts = []
        for member in range(group):
            indices = list(range(member, rows, group))
            take = functools.partial(ops.take, indices=indices, axis=0)
            parts.append(next_fn(take(prompt), tree.map_structure(take, cache), index))

        def interleave(*values):
            stacked = ops.stack(values, axis=1)
            return ops.reshape(stacked, (rows,) + tuple(ops.shape(stacked)[2:]))

        return tree.map_structure(interleave, *parts)

    return call


@functools.cache
def grouped_sampler_class(base: type) -> type:
    """Returns a subclass of KerasHub sampler ``base`` that groups ``next`` calls."""

    class Grouped(base):
        def __call__(self, next, prompt, *args, **kwargs):
            from keras import ops

            batch_size = ops.shape(prompt)[0]
            return super().__call__(_grouped_next(next, batch_size), prompt, *args, **kwargs)

    Grouped.__name__ = Grouped.__qualname__ = f"Grouped{base.__name__}"
    return Grouped
