"""The cross-backend benchmark: the same model and prompt on each backend, each in its own process.

A report is plain data, ready for JSON::

    {"model": ..., "settings": {...},
     "results": [{"engine": "keras-gemma-app" | "keras-hub" | "llama.cpp", "backend": ..., "dtype": ...,
                  "quantize": ..., "batch": ..., "prompt_tokens": ..., "new_tokens": ...,
                  "import_s": ..., "load_s": ..., "first_call_s": ..., "ttft_ms": ...,
                  "decode_tok_s": ..., "decode_tok_s_min": ..., "decode_tok_s_max": ...,
                  "prefill_tok_s": ..., "peak_rss_mb": ..., "text": ..., "token_ids": [...]}, ...],
     "agreement": [{"batch": ..., "prompt_tokens": ..., "agree": ..., "texts": {backend: text}}, ...],
     "errors": [{"engine": ..., "backend": ..., "error": ...}, ...]}

A figure that does not apply is null. Decode speed is the median over the
runs, with the slowest and fastest run beside it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys

from keras_gemma_app.backend import BACKENDS
from keras_gemma_app.errors import SettingsError

ENGINE = "keras-gemma-app"
BASELINES = ("keras-hub", "llama.cpp")


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What to measure.

    Attributes:
        model: anything :func:`keras_gemma_app.load` takes.
        backends: backends to run, each in its own process.
        dtype: float32, bfloat16 or float16; None keeps KerasHub's default (float32).
        quantize: "int8" or "int4" to quantize after loading (a quantized preset
            needs none: it loads quantized).
        prompt_tokens: prompt lengths in tokens (``<bos>`` included).
        new_tokens: tokens generated per run.
        batch: batch sizes.
        runs: timed runs per measurement, after one untimed first call.
        baselines: "keras-hub" and/or "llama.cpp", measured beside the app.
        gguf: the GGUF file llama.cpp runs (default: MODEL itself when it is
            a .gguf file, or the bundled model's file).
        force: load even if the memory check says the model does not fit.
    """

    model: str
    backends: tuple[str, ...] = BACKENDS
    dtype: str | None = None
    quantize: str | None = None
    prompt_tokens: tuple[int, ...] = (16,)
    new_tokens: int = 64
    batch: tuple[int, ...] = (1,)
    runs: int = 5
    baselines: tuple[str, ...] = ()
    gguf: str | None = None
    force: bool = False

    def check(self) -> "BenchSettings":
        """Raises SettingsError for values out of range; returns self."""
        from keras_gemma_app.loading import check_dtype
        from keras_gemma_app.quantization import check_quantize

        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown or not self.backends:
            raise SettingsError(f"Expected backends among {', '.join(BACKENDS)}, received {', '.join(self.backends) or 'none'}.")
        check_dtype(self.dtype)
        check_quantize(self.quantize)
        for name, values in (("prompt tokens", self.prompt_tokens), ("batch sizes", self.batch)):
            if not values or any(v < 1 for v in values):
                raise SettingsError(f"Expected {name} >= 1, received {', '.join(map(str, values)) or 'none'}.")
        if any(p < 2 for p in self.prompt_tokens):
            raise SettingsError(f"Expected prompts of at least 2 tokens (<bos> and one more), received {min(self.prompt_tokens)}.")
        if self.new_tokens < 2:
            raise SettingsError(f"Expected at least 2 new tokens (decode speed counts those after the first), received {self.new_tokens}.")
        if self.runs < 1:
            raise SettingsError(f"Expected at least 1 run, received {self.runs}.")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise SettingsError(f"Unknown baseline {bad[0]!r}: expected {' or '.join(BASELINES)}.")
        return self


def parse_counts(text: str, what: str) -> tuple[int, ...]:
    """ "16,256" -> (16, 256)."""
    try:
        values = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"Expected {what} as comma-separated whole numbers such as 16,256, received {text!r}.") from None
    if not values:
        raise SettingsError(f"Expected {what} as comma-separated whole numbers such as 16,256, received {text!r}.")
    return values


def llama_gguf(settings: BenchSettings) -> str:
    """The GGUF file the llama.cpp baseline runs; raises SettingsError when there is none or no llama.cpp."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise SettingsError(
            "The llama.cpp baseline needs llama-cpp-python: pip install 'keras-gemma-app[llama]' "
            "(it compiles llama.cpp, about 10 minutes)."
        )
    if settings.gguf:
        return settings.gguf
    if settings.model.lower().endswith(".gguf"):
        return settings.model
    from keras_gemma_app import bundled
    from keras_gemma_app.model_ref import model_or_default

    if model_or_default(settings.model) == bundled.BUNDLED_NAME:
        return str(bundled.gguf_file())
    raise SettingsError(
        f"The llama.cpp baseline runs a GGUF file: expected MODEL to be a .gguf file or --gguf FILE, "
        f"received {settings.model!r}."
    )


def _worker(module: str, payload: dict) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", module, json.dumps(payload)],
                          capture_output=True, text=True, env=env)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith('{"results"'):
            return json.loads(line)
    lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    if done.returncode < 0:
        # Killed by a signal (a crash inside a native library): its last line is only a log line.
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        last = f" after: {lines[-1]}" if lines else ""
        return {"error": f"its process crashed ({name}){last}"}
    return {"error": lines[-1] if lines else f"exit status {done.returncode}"}


def _agreement(results: list[dict]) -> list[dict]:
    shapes = sorted({(r["batch"], r["prompt_tokens"]) for r in results if r["engine"] == ENGINE})
    agreement = []
    for batch, length in shapes:
        same = [r for r in results if r["engine"] == ENGINE and (r["batch"], r["prompt_tokens"]) == (batch, length)]
        agreement.append({
            "batch": batch, "prompt_tokens": length,
            "agree": len({tuple(r["token_ids"]) for r in same}) == 1,
            "texts": {r["backend"]: r["text"] for r in same},
        })
    return agreement


def run_bench(settings: BenchSettings, on_start=None) -> dict:
    """Runs the benchmark; returns the report (see the module docstring).

    Args:
        settings: what to measure.
        on_start: optional ``on_start(engine, backend)``, called as each process starts.
    """
    settings.check()
    gguf = llama_gguf(settings) if "llama.cpp" in settings.baselines else None
    engines = [ENGINE] + (["keras-hub"] if "keras-hub" in settings.baselines else [])
    common = {"model": settings.model, "dtype": settings.dtype, "quantize": settings.quantize, "prompt_tokens": list(settings.prompt_tokens),
              "new_tokens": settings.new_tokens, "batch": list(settings.batch), "runs": settings.runs,
              "force": settings.force}
    results, errors = [], []
    for backend in settings.backends:
        if on_start:
            on_start(ENGINE, backend)
        answer = _worker("keras_gemma_app.bench_worker", {**common, "backend": backend, "engines": engines})
        if "error" in answer:
            errors.append({"engine": ENGINE, "backend": backend, "error": answer["error"]})
        results.extend(answer.get("results", []))
    if gguf is not None:
        if on_start:
            on_start("llama.cpp", None)
        answer = _worker("keras_gemma_app.bench_llama", {**common, "gguf": gguf})
        if "error" in answer:
            errors.append({"engine": "llama.cpp", "backend": None, "error": answer["error"]})
        results.extend(answer.get("results", []))
    return {
        "model": settings.model,
        "settings": {**dataclasses.asdict(settings), "gguf": gguf},
        "results": results,
        "agreement": _agreement(results),
        "errors": errors,
    }


def benchmark(model: str | None = None, *, backends=BACKENDS, dtype: str | None = None, quantize: str | None = None,
          prompt_tokens=16, new_tokens: int = 64, batch=1, runs: int = 5, baselines=(), gguf: str | None = None,
          force: bool = False, on_start=None):
    """Times ``model`` on each backend, each in its own process; see :class:`BenchSettings`.

    ``prompt_tokens`` and ``batch`` take a number or a sequence of numbers. The
    report is a dict (see the module docstring) that renders as a table in a
    notebook cell or with ``rich.print``.
    """
    from keras_gemma_app.display import BenchReport
    from keras_gemma_app.model_ref import model_or_default

    def counts(value):
        return (value,) if isinstance(value, int) else tuple(value)

    settings = BenchSettings(
        model=model_or_default(model), backends=(backends,) if isinstance(backends, str) else tuple(backends),
        dtype=dtype, quantize=quantize, prompt_tokens=counts(prompt_tokens), new_tokens=new_tokens,
        batch=counts(batch), runs=runs, baselines=(baselines,) if isinstance(baselines, str) else tuple(baselines),
        gguf=gguf, force=force,
    )
    return BenchReport(run_bench(settings, on_start=on_start))


def result_key(r: dict) -> tuple:
    """What a result measured: (backend, dtype, batch, prompt_tokens, quantize)."""
    return r["backend"], r["dtype"], r["batch"], r["prompt_tokens"], r.get("quantize")


def speedups(report: dict) -> dict[tuple, float]:
    """:func:`result_key` -> the app's decode speed over keras-hub's, where both ran."""
    hub = {result_key(r): r["decode_tok_s"] for r in report["results"] if r["engine"] == "keras-hub"}
    return {result_key(r): r["decode_tok_s"] / hub[result_key(r)] for r in report["results"]
            if r["engine"] == ENGINE and r["decode_tok_s"] and hub.get(result_key(r))}
