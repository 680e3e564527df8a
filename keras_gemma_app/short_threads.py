"""Work run side by side in threads that end when it is done.

For one-off builds (packing weights for torch's kernels), not for work that
recurs: see :func:`side_by_side` for why the threads must not outlive it.
"""

from __future__ import annotations


def side_by_side(works):
    """The results of ``works``, the first here and each other in a thread of its own that then ends.

    Threads that end, not long-lived helpers: a thread that has run torch's parallel kernels keeps a
    team of OpenMP workers while it lives, and with more of them than cores the OpenMP runtime stops
    letting workers wait actively, so every later parallel kernel pays to wake its workers (Gemma 3
    270M bfloat16: 20 -> 35 ms a forward pass after a build in a long-lived helper).
    """
    import threading

    results = [None] * len(works)
    errors = []

    def run(i):
        try:
            results[i] = works[i]()
        except BaseException as error:  # handed to the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), name=f"keras-gemma-build-{i}") for i in range(1, len(works))]
    for thread in threads:
        thread.start()
    try:
        run(0)
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results
