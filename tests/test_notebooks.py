"""The Kaggle and Colab notebooks run headless, cell by cell, against the real Gemma 3 270M preset.

A failing cell fails the test. The model and backend come from the
environment, which the notebooks' parameter cell reads.
"""

from __future__ import annotations

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples"
NOTEBOOKS = ("kaggle_quickstart.ipynb", "colab_quickstart.ipynb")


def execute(name: str, tmp_path, monkeypatch, *, backend: str, model, extra=()):
    """Runs the notebook in a fresh kernel, plus ``extra`` cells that are expected to raise."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    for code in extra:
        notebook.cells.append(nbformat.v4.new_code_cell(code, metadata={"tags": ["raises-exception"]}))
    monkeypatch.setenv("KERAS_BACKEND", backend)
    monkeypatch.setenv("KERAS_GEMMA_MODEL", str(model))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return notebook


def outputs(cell, kind: str) -> str:
    """All text of one output kind ("stdout", "text/plain", "text/html") in a cell."""
    parts = []
    for output in cell.get("outputs", []):
        if kind == "stdout" and output.get("name") == "stdout":
            parts.append(output["text"])
        elif kind in output.get("data", {}):
            parts.append(output["data"][kind])
    return "".join(parts)


def cell_with(notebook, text: str):
    return next(cell for cell in notebook.cells if cell.cell_type == "code" and text in cell.source)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_stored_without_outputs_and_pick_the_backend_first(name):
    import nbformat

    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    first = code[0]
    assert "parameters" in first.metadata.get("tags", [])
    assert 'os.environ["KERAS_BACKEND"] = BACKEND' in first.source and "KERAS_GEMMA_MODEL" in first.source
    assert "import keras" not in first.source and "kga" not in first.source


def _check_run(notebook, backend: str):
    loaded = outputs(cell_with(notebook, "kga.load(MODEL"), "text/plain")
    assert loaded.startswith("Pipeline(") and f"backend='{backend}'" in loaded and "dtype='bfloat16'" in loaded
    streamed = outputs(cell_with(notebook, "pipe.stream("), "stdout")
    assert len(streamed.split()) >= 5
    chat = outputs(cell_with(notebook, "pipe.chat("), "stdout")
    assert chat.count("user: ") == 2 and chat.count("model: ") == 2
    samplers = outputs(cell_with(notebook, "samplers = {"), "stdout").splitlines()
    assert [line.split(":")[0].strip() for line in samplers] == ["greedy", "top-k", "top-p", "beam"]
    bench = outputs(cell_with(notebook, "kga.benchmark("), "text/html")
    assert "decode tok/s" in bench and "keras-gemma-app" in bench and backend in bench
    listing = outputs(cell_with(notebook, "kga.list_models("), "text/html")
    assert "gemma3_270m_pypi" in listing and "Gemma models" in listing


@pytest.mark.slow
def test_kaggle_notebook_runs_on_jax(real_preset, tmp_path, monkeypatch):
    notebook = execute("kaggle_quickstart.ipynb", tmp_path, monkeypatch, backend="jax", model=real_preset)
    _check_run(notebook, "jax")


@pytest.mark.slow
def test_colab_notebook_runs_on_torch_and_refuses_another_backend_once_loaded(real_preset, tmp_path, monkeypatch):
    notebook = execute("colab_quickstart.ipynb", tmp_path, monkeypatch, backend="torch", model=real_preset,
                       extra=["import keras\n"
                              "print(keras.config.backend(), type(pipe.causal_lm.backbone.token_embedding.embeddings.value).__module__)",
                              'kga.use_backend("jax")'])
    _check_run(notebook, "torch")
    check, switch = notebook.cells[-2:]
    assert outputs(check, "stdout").startswith("torch torch.")  # the weights are torch tensors
    [error] = [output for output in switch.outputs if output.output_type == "error"]
    # The app's one line, not a traceback through Keras.
    assert error.ename == "BackendError"
    assert error.traceback == [f"BackendError: {error.evalue}"]
    assert "restart the Python process or notebook kernel" in error.evalue
