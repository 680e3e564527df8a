import pytest

import keras_gemma_app as kga
from keras_gemma_app.text_stream import TextAssembler, check_stop_strings

# A toy vocabulary: each id decodes to a piece; id 9 and 10 are the two halves of "é" in UTF-8.
PIECES = {1: "Hello", 2: " wor", 3: "ld", 4: " #", 5: "##", 6: " end", 7: "#", 8: " ok"}


def decode(ids):
    data = b"".join(PIECES[i].encode() if i in PIECES else {9: b"\xc3", 10: b"\xa9"}[i] for i in ids)
    return data.decode("utf-8", errors="replace")


def run(ids, stop=()):
    assembler = TextAssembler(decode, stop)
    pieces = []
    for token in ids:
        pieces.append(assembler.push(token))
        if assembler.stopped:
            break
    pieces.append(assembler.finish())
    return pieces, assembler


def test_pieces_concatenate_to_the_text():
    pieces, assembler = run([1, 2, 3, 8])
    assert pieces[:4] == ["Hello", " wor", "ld", " ok"]
    assert "".join(pieces) == assembler.text == "Hello world ok"


def test_stop_string_spanning_tokens_is_not_returned():
    pieces, assembler = run([1, 4, 5, 6], stop=["###"])
    assert assembler.stopped and assembler.text == "Hello "
    assert "".join(pieces) == "Hello " and "#" not in "".join(pieces)
    assert assembler.token_ids == [1, 4, 5]  # stopped as soon as the string was complete


def test_a_partial_stop_string_is_released_when_it_does_not_complete():
    pieces, assembler = run([1, 4, 8], stop=["###"])
    assert pieces[1] == " "  # the "#" could start "###": held back
    assert "".join(pieces) == "Hello # ok" and not assembler.stopped


def test_incomplete_utf8_is_held_back():
    pieces, _ = run([1, 9, 10])
    assert pieces[1] == "" and pieces[2] == "é"


def test_check_stop_strings():
    assert check_stop_strings("###") == ("###",)
    assert check_stop_strings(None) == ()
    with pytest.raises(kga.SettingsError, match="Stop strings must be non-empty text"):
        check_stop_strings(["ok", ""])
