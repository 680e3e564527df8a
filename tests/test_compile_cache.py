"""JAX's compiled programs are kept in the app cache between processes."""

from conftest import run_python

LOAD = """
import sys, jax
import keras_gemma_app as kga
kga.use_backend("jax")
pipe = kga.load(sys.argv[1])
pipe.generate("Hello", max_new_tokens=2, raw=True)
print("CACHE", jax.config.jax_compilation_cache_dir)
"""


def test_jax_programs_are_stored_in_the_app_cache(tiny_preset, tmp_path):
    env = {"KERAS_GEMMA_CACHE": str(tmp_path / "app")}
    done = run_python(LOAD, str(tiny_preset), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "app" / "jax-compilation-cache"
    assert f"CACHE {folder}" in done.stdout
    stored = sorted(path.name for path in folder.iterdir())
    assert len(stored) > 5
    again = run_python(LOAD, str(tiny_preset), env=env)
    assert again.returncode == 0
    # The second process found every program it could keep: it stored nothing new.
    assert sorted(path.name for path in folder.iterdir()) == stored


def test_opting_out(tiny_preset, tmp_path):
    env = {"KERAS_GEMMA_CACHE": str(tmp_path / "app"), "KERAS_GEMMA_COMPILE_CACHE": "0"}
    done = run_python(LOAD, str(tiny_preset), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CACHE None" in done.stdout
    assert not (tmp_path / "app" / "jax-compilation-cache").exists()
