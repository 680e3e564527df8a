"""Products on weights packed for oneDNN give torch.matmul's bfloat16 values, bit for bit."""

import pytest

torch = pytest.importorskip("torch")

from keras_gemma_app import onednn_linear  # noqa: E402

pytestmark = pytest.mark.skipif(not onednn_linear.available(), reason="no oneDNN bfloat16 on this CPU")


def _random(*shape):
    return (torch.randn(*shape) * 0.05).to(torch.bfloat16)


@pytest.mark.parametrize("rows", [1, 3, onednn_linear.EXACT_ROWS])
@pytest.mark.parametrize("in_features,out_features", [(640, 1536), (2048, 640), (64, 4096)])
def test_packed_product_equals_matmul(rows, in_features, out_features):
    torch.manual_seed(rows)
    matrix = _random(in_features, out_features)
    linear = onednn_linear.PackedBfloat16Linear(matrix)
    x = torch.randn(1, rows, in_features).to(torch.bfloat16)
    out = linear(x)
    assert out.shape == (1, rows, out_features) and out.dtype == torch.bfloat16
    assert torch.equal(out, torch.matmul(x, matrix))


def test_from_rows_is_the_product_with_the_transposed_table():
    table = _random(5000, 64)  # (vocabulary, hidden), as a tied embedding
    head = onednn_linear.PackedBfloat16Linear.from_rows(table)
    hidden = torch.randn(2, 64).to(torch.bfloat16)
    assert torch.equal(head(hidden), torch.matmul(hidden, table.t()))
    assert head.nbytes == 2 * 5000 * 64


def test_under_torch_compile_the_values_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    matrix = _random(128, 256)
    linear = onednn_linear.PackedBfloat16Linear(matrix)
    x = torch.randn(3, 128).to(torch.bfloat16)
    compiled = torch.compile(lambda v: linear(v) * 2)
    assert torch.equal(compiled(x), torch.matmul(x, matrix) * 2)


def test_only_two_dimensional_bfloat16_matrices():
    with pytest.raises(ValueError, match=r"Expected a 2-D bfloat16 matrix, received \(4, 4\) torch.float32"):
        onednn_linear.PackedBfloat16Linear(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="2-D"):
        onednn_linear.PackedBfloat16Linear(torch.zeros(2, 4, 4, dtype=torch.bfloat16))
