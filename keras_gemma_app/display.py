"""Results that show themselves as tables: rich on a terminal, HTML in a notebook cell.

``kga.list_models()`` and ``kga.benchmark()`` return plain lists and dicts (ready
for JSON) that also render as a table when they are the last expression of a
Jupyter, Kaggle or Colab cell, or when given to ``rich.print``.
"""

from __future__ import annotations

import io


def _html(renderable) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), record=True, width=220, force_jupyter=False, color_system="truecolor")
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format="<pre style=\"font-family:monospace\">{code}</pre>")


class ModelListing(list):
    """A list of catalogue entries (dicts) that renders as a table."""

    def table(self):
        from keras_gemma_app.tables import models_table

        return models_table(self)

    def __rich__(self):
        return self.table()

    def _repr_html_(self) -> str:
        return _html(self.table())


class BenchReport(dict):
    """A benchmark report (see :mod:`keras_gemma_app.bench`) that renders as a table with each backend's text."""

    def table(self):
        from keras_gemma_app.bench import speedups
        from keras_gemma_app.tables import bench_table

        return bench_table(self, speedups(self))

    def texts(self) -> list[str]:
        """Lines saying whether the backends agree, each backend's text, and any failure."""
        lines = []
        for item in self.get("agreement", []):
            verdict = "the same text on every backend" if item["agree"] else "texts differ"
            lines.append(f"batch {item['batch']}, prompt {item['prompt_tokens']} tokens: {verdict}")
            lines.extend(f"  {backend}: {text[:100]!r}" for backend, text in item["texts"].items())
        for error in self.get("errors", []):
            where = f" on {error['backend']}" if error["backend"] else ""
            lines.append(f"{error['engine']}{where} failed: {error['error']}")
        return lines

    def __rich__(self):
        from rich.console import Group
        from rich.text import Text

        return Group(self.table(), *(Text(line) for line in self.texts()))

    def _repr_html_(self) -> str:
        return _html(self.__rich__())
