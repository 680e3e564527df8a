"""The chat REPL driven as a user would: piped standard input, and Ctrl-C mid-reply."""

import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow
SCRIPT = pathlib.Path(sys.executable).with_name("keras-gemma")


def run_chat(preset, lines, *extra):
    return subprocess.run(
        [str(SCRIPT), "chat", "-m", str(preset), "--max-new-tokens", "6", *extra],
        input="".join(line + "\n" for line in lines), capture_output=True, text=True, timeout=300,
    )


def test_two_turns_set_save_and_load(tiny_preset, tmp_path):
    transcript = tmp_path / "talk.json"
    done = run_chat(tiny_preset, [
        "Hello", "/set temperature 2", "/set seed 4", "And then?", f"/save {transcript}", "/bye",
    ], "--system", "Be brief.")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "temperature = 2" in done.stderr and "seed = 4" in done.stderr
    messages = json.loads(transcript.read_text())["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "model", "user", "model"]
    replies = [line for line in done.stdout.splitlines() if line]
    assert messages[2]["content"].strip() in done.stdout and len(replies) >= 1

    reloaded = tmp_path / "again.json"
    again = run_chat(tiny_preset, [f"/load {transcript}", "/stats", f"/save {reloaded}", "/bye"])
    assert f"Loaded 5 messages from {transcript}" in again.stderr
    assert json.loads(reloaded.read_text()) == json.loads(transcript.read_text())


def test_bad_input_keeps_the_repl_running(tiny_preset):
    done = run_chat(tiny_preset, ["/set top_p 7", "/set colour red", "/set top_k x", "/frobnicate", "/load nope.json",
                                  "Hello", "/stats", "/bye"])
    assert done.returncode == 0
    assert "Error: top-p `p` must be in the interval (0, 1], but is 7.0." in done.stderr
    assert "Error: Unknown setting 'colour'" in done.stderr
    assert "Error: top_k takes an integer, received 'x'." in done.stderr
    assert "Error: Unknown command /frobnicate" in done.stderr
    assert "Error: Cannot read transcript 'nope.json'" in done.stderr
    assert "prompt tokens" in done.stderr  # the reply after the errors happened


def test_ctrl_c_stops_the_reply_and_keeps_the_conversation(tiny_preset, tmp_path):
    transcript = tmp_path / "talk.json"
    # Started with Ctrl-C ignored, as a script run in the background starts it: the chat must still take it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = subprocess.Popen(
            [str(SCRIPT), "chat", "-m", str(tiny_preset), "--max-new-tokens", "8000", "-q"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    process.stdin.write("Tell me a long story\n")
    process.stdin.flush()
    received, deadline = b"", time.time() + 240
    while len(received) < 20 and time.time() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            received += os.read(process.stdout.fileno(), 4096)
    assert len(received) >= 20, "the reply should be streaming"
    process.send_signal(signal.SIGINT)
    time.sleep(1)
    out, err = process.communicate(f"/save {transcript}\n/bye\n", timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "[reply stopped; the conversation keeps it]" in err
    messages = json.loads(transcript.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "model"]
    assert messages[1]["content"] and len(messages[1]["content"]) < 8000


def test_chat_through_a_running_server_keeps_the_conversation_here(tiny_server, tiny_preset, tmp_path):
    lines = ["Hello", "/set temperature 1.5", "/set seed 2", "And then?", "/bye"]
    here = tmp_path / "here.json"
    served_transcript = tmp_path / "served.json"
    env = {**os.environ, "KERAS_GEMMA_HOST": tiny_server.address}
    served = subprocess.run(
        [str(SCRIPT), "chat", "-m", str(tiny_preset), "--max-new-tokens", "6", "--system", "Be brief."],
        input="".join(line + "\n" for line in [*lines[:-1], f"/save {served_transcript}", "/bye"]),
        capture_output=True, text=True, timeout=300, env=env)
    local = run_chat(tiny_preset, [*lines[:-1], f"/save {here}", "/bye"], "--system", "Be brief.", "--no-server")
    assert served.returncode == 0 and local.returncode == 0, served.stderr[-2000:] + local.stderr[-2000:]
    assert f"Using the model served at {tiny_server.address}" in served.stderr and "seed = 2" in served.stderr
    assert "Using the model served" not in local.stderr
    assert json.loads(served_transcript.read_text()) == json.loads(here.read_text())
    assert served.stdout == local.stdout
