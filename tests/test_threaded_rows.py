"""Row-split products across threads: torch's own values, up to the order of float32 sums."""

import os

import pytest
import torch

from keras_gemma_app.threaded_rows import ThreadedRows


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("batch", [1, 3])
def test_split_product_equals_torch_bit_for_bit(threads, batch):
    generator = torch.Generator().manual_seed(threads * 10 + batch)
    # Not a multiple of the chunk alignment: the last chunk is shorter.
    rows = torch.randn(10_001, 640, generator=generator) * 0.05
    product = ThreadedRows(rows, threads=threads)
    assert len(product.chunks) == min(threads, 3)
    assert sum(len(chunk) for chunk in product.chunks) == len(rows)
    x = torch.randn(batch, 640, generator=generator) * 3
    with torch.inference_mode():
        out = product(x)
        # The math library may sum a row in another order for another number of rows (MKL on AMX
        # CPUs does for some sizes): float32 rounding apart, torch's values.
        torch.testing.assert_close(out, torch.matmul(x, rows.t()), rtol=1e-6, atol=1e-5)
    # Leading dimensions carry through, as with torch.matmul.
    torch.testing.assert_close(product(x[:, None, :]), torch.matmul(x[:, None, :], rows.t()), rtol=1e-6, atol=1e-5)


def test_workers_take_the_callers_autograd_mode():
    rows = torch.nn.Parameter(torch.randn(9000, 64))
    product = ThreadedRows(rows, threads=2)
    with torch.inference_mode():
        # An inference tensor times a parameter: only inference mode may do that.
        hidden = torch.randn(1, 64)
        assert torch.is_inference(product(hidden))
    x = torch.randn(1, 64)
    with torch.no_grad():
        assert not product(x).requires_grad
    out = product(x)
    assert out.requires_grad
    out.sum().backward()
    assert torch.allclose(rows.grad, x.expand(9000, 64))


def test_one_thread_is_the_plain_product():
    rows = torch.randn(5000, 32)
    product = ThreadedRows(rows, threads=1)
    assert len(product.chunks) == 1
    x = torch.randn(2, 32)
    assert torch.equal(product(x), torch.matmul(x, rows.t()))


def test_rejects_what_is_not_a_matrix():
    with pytest.raises(ValueError, match="Expected a 2-D matrix of rows, received shape"):
        ThreadedRows(torch.zeros(2, 3, 4))


FORK = r"""
import os, sys, time, torch
from keras_gemma_app.threaded_rows import ThreadedRows
rows = torch.randn(9000, 32)
product = ThreadedRows(rows, threads=2)
x = torch.randn(1, 32)
product(x)  # the parent's helper threads exist now
pid = os.fork()
if pid == 0:  # the child: exit 0 only if the product completes and is right
    # GNU OpenMP does not survive a fork: a child that used the parent's thread team would hang in the
    # math library (as it does on CPUs where MKL threads this product), so a forked child runs on one.
    torch.set_num_threads(1)
    os._exit(0 if torch.allclose(product(x), torch.matmul(x, rows.t()), rtol=1e-6, atol=1e-5) else 1)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit", os.waitstatus_to_exitcode(status))
        sys.exit(0)
    time.sleep(0.05)
os.kill(pid, 9)
print("child hung")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_threads():
    from conftest import run_python

    # In a process of its own: this test process runs JAX's threads, which a fork must not copy.
    done = run_python(FORK)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "child exit 0"


EXIT = r"""
import torch
from keras_gemma_app.threaded_rows import ThreadedRows
rows = torch.randn(9000, 32)
ThreadedRows(rows, threads=3)(torch.randn(1, 32))
print("done")
"""


def test_a_process_exits_with_helpers_idle():
    from conftest import run_python

    # The helpers are daemon threads: the interpreter does not wait on them at exit.
    done = run_python(EXIT, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "done"


def test_a_failing_product_raises_in_the_caller():
    rows = torch.randn(9000, 32)
    product = ThreadedRows(rows, threads=2)
    with pytest.raises(RuntimeError):
        product(torch.randn(1, 31))  # the wrong width: every chunk's product fails
