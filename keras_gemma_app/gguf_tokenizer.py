"""Rebuild a SentencePiece model from the tokenizer stored in GGUF metadata.

llama.cpp keeps a SentencePiece vocabulary as three parallel arrays
(`tokenizer.ggml.tokens`, `.scores`, `.token_type`) plus the special token
ids. This module turns them back into a serialized SentencePiece
`ModelProto` that KerasHub's `Gemma3Tokenizer` (TensorFlow Text or the
`sentencepiece` package) loads and that round-trips text exactly:

- BPE with byte fallback, identity normalizer, no dummy prefix, no
  whitespace collapsing (Gemma's own tokenizer settings);
- `<unk>` is UNKNOWN, pad/bos/eos are CONTROL;
- every other piece GGUF marks CONTROL (`<start_of_turn>`, `<mask>`,
  `<unusedN>`, ...) becomes USER_DEFINED so it is matched in raw text, as in
  Gemma's original tokenizer;
- llama.cpp wrote the USER_DEFINED whitespace-run pieces with plain spaces;
  they get their `▁` back.

Example:

```python
reader = GGUFReader(path)
proto = build_sentencepiece_proto(reader.metadata)
sentencepiece.SentencePieceProcessor(model_proto=proto).encode("Hello")
```
"""

from __future__ import annotations

from keras_gemma_app.errors import ConversionError

# Token types, shared by llama.cpp (LLAMA_TOKEN_TYPE_*) and SentencePiece.
NORMAL = 1
UNKNOWN = 2
CONTROL = 3
USER_DEFINED = 4
UNUSED = 5
BYTE = 6

_SPACE = " "
_SP_SPACE = "\u2581"  # "▁", SentencePiece's escaped space.

# Gemma's special tokens: (piece, metadata key of its id, default id).
_SPECIAL_IDS = (
    ("<pad>", "tokenizer.ggml.padding_token_id", 0),
    ("<eos>", "tokenizer.ggml.eos_token_id", 1),
    ("<bos>", "tokenizer.ggml.bos_token_id", 2),
    ("<unk>", "tokenizer.ggml.unknown_token_id", 3),
)

VISION_PIECES = ("<start_of_image>", "<img>", "<end_of_image>")


def read_vocabulary(metadata):
    """The tokenizer arrays of a GGUF file, checked for consistency.

    Args:
        metadata: `GGUFReader.metadata`.

    Returns:
        `(pieces, scores, types)`: a list of str and two equal-length numpy
        arrays (float32 scores, int32 token types).

    Raises:
        ConversionError: The file holds no SentencePiece-style vocabulary.
    """
    import numpy as np

    model = metadata.get("tokenizer.ggml.model")
    if model != "llama":
        raise ConversionError(
            f"Expected a SentencePiece tokenizer (tokenizer.ggml.model "
            f"'llama'), received {model!r}"
        )
    try:
        pieces = metadata["tokenizer.ggml.tokens"]
    except KeyError as e:
        raise ConversionError(
            "Expected tokenizer.ggml.tokens in the GGUF metadata, received "
            "none"
        ) from e
    n = len(pieces)
    scores = metadata.get("tokenizer.ggml.scores")
    scores = np.zeros(n, np.float32) if scores is None else scores
    types = metadata.get("tokenizer.ggml.token_type")
    types = np.full(n, NORMAL, np.int32) if types is None else types
    if len(scores) != n or len(types) != n:
        raise ConversionError(
            f"Expected {n} tokenizer scores and types, received "
            f"{len(scores)} scores and {len(types)} types"
        )
    return list(pieces), np.asarray(scores, np.float32), np.asarray(types)


def special_token_ids(metadata):
    """Map Gemma's special pieces to ids from metadata (with defaults)."""
    return {
        piece: int(metadata.get(key, default))
        for piece, key, default in _SPECIAL_IDS
    }


def build_sentencepiece_proto(metadata):
    """Serialize a SentencePiece `ModelProto` rebuilt from GGUF metadata.

    Args:
        metadata: `GGUFReader.metadata` of a Gemma GGUF file.

    Returns:
        The serialized proto as bytes.

    Raises:
        ConversionError: The vocabulary is missing or inconsistent, or a
            special token id does not name its expected piece.
    """
    from sentencepiece import sentencepiece_model_pb2 as sp_pb2

    pieces, scores, types = read_vocabulary(metadata)
    specials = special_token_ids(metadata)
    for piece, token_id in specials.items():
        if not 0 <= token_id < len(pieces) or pieces[token_id] != piece:
            found = pieces[token_id] if 0 <= token_id < len(pieces) else None
            raise ConversionError(
                f"Expected special token {piece} at id {token_id}, received "
                f"{found!r}"
            )
    types = types.astype("int32", copy=True)
    types[types == CONTROL] = USER_DEFINED
    for piece in ("<pad>", "<eos>", "<bos>"):
        types[specials[piece]] = CONTROL
    types[specials["<unk>"]] = UNKNOWN

    proto = sp_pb2.ModelProto()
    trainer = proto.trainer_spec
    trainer.model_type = sp_pb2.TrainerSpec.BPE
    trainer.vocab_size = len(pieces)
    trainer.byte_fallback = True
    trainer.pad_id = specials["<pad>"]
    trainer.eos_id = specials["<eos>"]
    trainer.bos_id = specials["<bos>"]
    trainer.unk_id = specials["<unk>"]
    trainer.pad_piece = "<pad>"
    trainer.eos_piece = "<eos>"
    trainer.bos_piece = "<bos>"
    trainer.unk_piece = "<unk>"

    for spec in (proto.normalizer_spec, proto.denormalizer_spec):
        spec.name = "identity"
        spec.add_dummy_prefix = False
        spec.remove_extra_whitespaces = False
        spec.escape_whitespaces = True

    user_defined = types == USER_DEFINED
    entries = proto.pieces
    for i, (piece, score, kind) in enumerate(
        zip(pieces, scores.tolist(), types.tolist())
    ):
        if user_defined[i] and _SPACE in piece:
            piece = piece.replace(_SPACE, _SP_SPACE)
        entries.add(piece=piece, score=score, type=kind)
    return proto.SerializeToString()


def has_vision_tokens(metadata):
    """Whether the vocabulary holds Gemma 3's image tokens.

    KerasHub's own Hugging Face converter sets `Gemma3Tokenizer`'s
    `has_vision_tokens` this way; text-only models (1B, 270M) still carry
    the pieces in their vocabulary.
    """
    pieces = set(metadata.get("tokenizer.ggml.tokens", ()))
    return all(p in pieces for p in VISION_PIECES)
