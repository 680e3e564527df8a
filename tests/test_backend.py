
import pytest

import keras_gemma_app as kga
from keras_gemma_app import backend
from conftest import run_python


def test_default_is_jax_when_nothing_is_chosen(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(backend, "keras_backend_loaded", lambda: None)
    assert backend.requested_backend() == "jax"


def test_flag_wins_over_environment(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    monkeypatch.setattr(backend, "keras_backend_loaded", lambda: None)
    assert backend.requested_backend("torch") == "torch"
    assert backend.requested_backend() == "tensorflow"


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(kga.BackendError, match="Unknown backend 'mxnet': expected one of jax, tensorflow, torch"):
        kga.use_backend("mxnet")


def test_bad_keras_backend_variable(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "numpyy")
    monkeypatch.setattr(backend, "keras_backend_loaded", lambda: None)
    with pytest.raises(kga.BackendError, match="KERAS_BACKEND='numpyy'"):
        backend.requested_backend()


def test_switching_after_keras_loaded_says_how_to_fix(backend):
    import keras  # noqa: F401  (fixes the backend of this process)

    other = "torch" if backend != "torch" else "jax"
    with pytest.raises(kga.BackendError) as info:
        kga.use_backend(other)
    message = str(info.value)
    assert f"already loaded with the '{backend}' backend" in message
    assert "restart" in message and "\n" not in message
    assert kga.use_backend(backend) == backend  # same choice again is fine


def test_not_installed_backend(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(kga.BackendError, match="Backend 'torch' is not installed: pip install torch"):
        kga.use_backend("torch")


@pytest.mark.slow
def test_use_backend_sets_keras_backend_before_import():
    code = (
        "import sys, keras_gemma_app as kga\n"
        "assert 'keras' not in sys.modules\n"
        "kga.use_backend('torch')\n"
        "import keras\n"
        "print(keras.config.backend())\n"
    )
    result = run_python(code, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch"


def test_import_does_not_load_keras():
    result = run_python(
        "import sys, keras_gemma_app as kga, keras_gemma_app.cli\n"
        "kga.Greedy(); kga.TopP(p=0.5)\n"
        "print(sorted(m for m in ('keras', 'keras_hub', 'tensorflow', 'jax', 'torch') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
