"""Row-split products across threads: torch's own values, bit for bit."""

import os
import signal
import time

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
        assert torch.equal(out, torch.matmul(x, rows.t()))
    # Leading dimensions carry through, as with torch.matmul.
    assert torch.equal(product(x[:, None, :]), torch.matmul(x[:, None, :], rows.t()))


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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_threads():
    rows = torch.randn(9000, 32)
    product = ThreadedRows(rows, threads=2)
    x = torch.randn(1, 32)
    product(x)  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the product completes and is right
        ok = torch.equal(product(x), torch.matmul(x, rows.t()))
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's product did not finish")
