"""A picture of a benchmark report: decode speed and time to first token per engine and backend."""

from __future__ import annotations

from keras_gemma_app.errors import SettingsError


def _label(result: dict) -> str:
    engine = result["engine"]
    where = result["backend"] or "cpu"
    dtype = "".join(f" {result[key]}" for key in ("dtype", "quantize") if result.get(key))
    return f"{engine} · {where}{dtype}"


def check_plotting() -> None:
    """Raises SettingsError if matplotlib is missing (checked before a long benchmark)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise SettingsError(_MISSING)


_MISSING = "--plot needs matplotlib: pip install 'keras-gemma-app[plot]'."


def plot_report(report: dict, path: str) -> None:
    """Writes a PNG with one pair of bar charts per (batch, prompt length).

    Raises:
        SettingsError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SettingsError(_MISSING) from None
    shapes = sorted({(r["batch"], r["prompt_tokens"]) for r in report["results"]})
    per_shape = max(len(report["results"]) // max(len(shapes), 1), 4)
    height = (1.0 + 0.4 * per_shape) * max(len(shapes), 1)
    figure, axes = plt.subplots(max(len(shapes), 1), 2, figsize=(13, height), squeeze=False)
    colours = {"keras-gemma-app": "tab:blue", "keras-hub": "tab:gray", "llama.cpp": "tab:orange"}
    for row, (batch, length) in enumerate(shapes):
        results = [r for r in report["results"] if (r["batch"], r["prompt_tokens"]) == (batch, length)]
        labels = [_label(r) for r in results]
        positions = range(len(results))
        colour = [colours.get(r["engine"], "tab:green") for r in results]
        speeds = [r["decode_tok_s"] or 0.0 for r in results]
        spread = [[s - (r["decode_tok_s_min"] or s) for s, r in zip(speeds, results)],
                  [(r["decode_tok_s_max"] or s) - s for s, r in zip(speeds, results)]]
        speed, ttft = axes[row]
        speed.barh(positions, speeds, xerr=spread, color=colour, capsize=3)
        speed.set_xlabel("decode tokens/s (median; bars: slowest–fastest run)")
        speed.set_title(f"decode · batch {batch} · prompt {length} tokens")
        ttft.barh(positions, [r["ttft_ms"] for r in results], color=colour)
        ttft.set_xlabel("time to first token, ms (median)")
        ttft.set_title(f"first token · batch {batch} · prompt {length} tokens")
        for axis in (speed, ttft):
            axis.set_yticks(list(positions), labels, fontsize=8)
            axis.invert_yaxis()
    figure.suptitle(f"{report['model']} · {report['settings']['new_tokens']} new tokens")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
