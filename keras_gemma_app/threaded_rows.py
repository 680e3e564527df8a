"""``x @ rows.T`` with the rows split between threads, for products torch runs on one core.

A float32 product with a transposed row-major matrix, such as Gemma's tied LM head
(``hidden @ embeddings.T``, 262k rows), goes to the math library's
matrix-vector kernel, which on a CPU runs on a single thread: 64 ms for
Gemma 3 270M on 2 cores, reading ~10 GB/s. Each output is one row's dot product
with ``x``, so computing halves of the rows in two threads (torch releases the
GIL inside the kernel) gives the same values, up to the order in which the math
library sums a row (mostly the same bits: on Gemma 3 270M's head, all 262k
equal on the CPUs tried), in 34-40 ms. Some math library builds already run
that kernel on every core (24-25 ms either way on a CPU with AMX); there the
split changes nothing but the order of some sums.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import threading

# Chunks start at multiples of this many rows: whole blocks for any kernel's tiling.
_ALIGN = 4096

_HELPERS: dict[int, list[queue.SimpleQueue]] = {}
_HELPERS_LOCK = threading.Lock()


def _helper(tasks: queue.SimpleQueue) -> None:
    while True:
        work, future = tasks.get()
        try:
            future.set_result(work())
        except BaseException as error:  # handed to the caller
            future.set_exception(error)


def _helpers(count: int) -> list[queue.SimpleQueue]:
    """``count`` helper threads' task queues, started once per process.

    Daemon threads, not a ``ThreadPoolExecutor``: an executor's threads are joined when
    the interpreter exits, and no process should wait on idle helpers to end. Keyed by process:
    a forked child does not inherit its parent's threads.
    """
    with _HELPERS_LOCK:
        key = os.getpid()
        queues = _HELPERS.setdefault(key, [])
        while len(queues) < count:
            tasks: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_helper, args=(tasks,), name=f"keras-gemma-rows-{len(queues)}",
                             daemon=True).start()
            queues.append(tasks)
        return queues[:count]


class ThreadedRows:
    """``x @ rows.T`` for a 2-D ``rows`` (out, in), in ``threads`` row chunks computed side by side."""

    def __init__(self, rows, threads: int | None = None):
        import torch

        if rows.ndim != 2:
            raise ValueError(f"Expected a 2-D matrix of rows, received shape {tuple(rows.shape)}.")
        threads = torch.get_num_threads() if threads is None else threads
        size = -(-rows.shape[0] // max(threads, 1))
        size = -(-size // _ALIGN) * _ALIGN
        # Views: no copy of the weights.
        self.chunks = [rows[start:start + size] for start in range(0, rows.shape[0], size)]
        self.rows = rows

    def __call__(self, x):
        import torch

        if len(self.chunks) == 1:
            return torch.matmul(x, torch.transpose(self.rows, 0, 1))
        # Autograd and inference modes are per thread: the helpers take the caller's.
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def product(chunk):
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                return torch.matmul(x, torch.transpose(chunk, 0, 1))

        # The first chunk in this thread, the others in helpers.
        futures = []
        for tasks, chunk in zip(_helpers(len(self.chunks) - 1), self.chunks[1:]):
            futures.append(concurrent.futures.Future())
            tasks.put((lambda chunk=chunk: product(chunk), futures[-1]))
        first = product(self.chunks[0])
        return torch.cat([first, *(future.result() for future in futures)], dim=-1)
