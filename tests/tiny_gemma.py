"""Builds a tiny, randomly initialised Gemma 3 preset for fast plumbing tests.

The SentencePiece vocabulary is trained here from a few sentences, with byte
fallback so any text encodes, and with Gemma's special pieces at the ids
Gemma 3 uses for pad/eos/bos/unk. Weights come from a fixed seed, so every
backend loading the saved preset sees the same model.
"""

from __future__ import annotations

import io
import pathlib

TEXT = """\
The quick brown fox jumps over the lazy dog.
Keras runs on JAX, TensorFlow and PyTorch.
Gemma is a family of lightweight open models.
The capital of France is Paris, and the capital of Italy is Rome.
def add(a, b):
    return a + b
Why is the sky blue? Because of Rayleigh scattering of sunlight.
"""

SPECIAL_PIECES = [
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<img>",
    "<mask>",
]


def train_vocabulary(vocab_size: int = 400) -> bytes:
    """Returns a serialized SentencePiece model trained on :data:`TEXT`."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT.splitlines() * 20),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=SPECIAL_PIECES,
        byte_fallback=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        minloglevel=2,
    )
    return model.getvalue()


def build_tiny_preset(out_dir: str | pathlib.Path, seed: int = 7) -> pathlib.Path:
    """Saves a 2-layer Gemma 3 CausalLM preset (float32) to ``out_dir``.

    keras must already be importable with the chosen backend.
    """
    out = pathlib.Path(out_dir)
    build_tiny_causal_lm(seed=seed).save_to_preset(str(out))
    return out


def build_tiny_causal_lm(num_layers: int = 2, seed: int = 7):
    """A random Gemma 3 CausalLM (float32) of ``num_layers`` blocks, with its preprocessor."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.Gemma3Tokenizer(proto=train_vocabulary())
    backbone = keras_hub.models.Gemma3Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        image_size=896,
        num_layers=num_layers,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=32,
        intermediate_dim=64,
        head_dim=16,
        use_post_ffw_norm=True,
        use_post_attention_norm=True,
        use_sliding_window_attention=True,
        sliding_window_size=16,
        vision_encoder=None,
        dtype="float32",
    )
    # Random weights give nearly flat logits; scale the embeddings so greedy
    # choices are well separated and identical across backends.
    embeddings = backbone.token_embedding.embeddings
    embeddings.assign(keras.ops.convert_to_numpy(embeddings) * 3.0)
    preprocessor = keras_hub.models.Gemma3CausalLMPreprocessor(
        tokenizer=tokenizer, image_converter=None, sequence_length=64
    )
    return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=preprocessor)
