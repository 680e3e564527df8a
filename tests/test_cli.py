import json
import subprocess
import sys

from click.testing import CliRunner

from keras_gemma_app.cli import VERBS, main
from conftest import run_cli, run_python


def test_help_lists_every_verb_without_importing_keras():
    code = (
        "import sys\n"
        "from keras_gemma_app.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('keras', 'keras_hub', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    for verb in VERBS:
        assert verb in done.stdout
    assert "LOADED []" in done.stdout


def test_console_script_and_module_both_answer_help():
    for command in (["keras-gemma", "--help"], [sys.executable, "-m", "keras_gemma_app", "--help"]):
        if command[0] == "keras-gemma":
            done = run_cli("--help")
        else:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "generate" in done.stdout and "backends" in done.stdout


def test_verb_help_describes_flags():
    result = CliRunner().invoke(main, ["generate", "--help"])
    for flag in ("--model", "--backend", "--dtype", "--max-new-tokens", "--sampler", "--temperature",
                 "--top-k", "--top-p", "--num-beams", "--alpha", "--seed", "--stop-token-id", "--prompts-file"):
        assert flag in result.output


def test_backends_reports_each_framework(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    result = CliRunner().invoke(main, ["backends", "--json", "-q"])
    assert result.exit_code == 0, result.output
    infos = {info["name"]: info for info in json.loads(result.stdout)}
    assert set(infos) == {"jax", "tensorflow", "torch"}
    for info in infos.values():
        assert info["installed"] and info["version"] and "CPU:0" in info["devices"]
    assert infos["jax"]["selected"] and infos["jax"]["builtin_default"]
    assert not infos["torch"]["selected"]


def test_backends_table():
    result = CliRunner().invoke(main, ["backends", "-q"])
    assert result.exit_code == 0
    for name in ("jax", "tensorflow", "torch", "built-in default"):
        assert name in result.stdout


def test_readme_shows_every_verb():
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [verb for verb in VERBS if f"keras-gemma {verb}" not in readme]
    assert missing == []
