"""Typed errors the library raises for problems a user can fix.

Every message is a single line that says what was expected, what was
received and, where there is one, what to do. The CLI prints the message and
exits with status 2; Python callers catch the class they care about.
"""


class KerasGemmaError(Exception):
    """Base class of every error a user can cause and fix."""

    def _render_traceback_(self) -> list[str]:
        """IPython (Jupyter, Kaggle, Colab) shows this one line instead of a traceback."""
        return [f"{type(self).__name__}: {self}"]


class BackendError(KerasGemmaError):
    """An unknown, missing or already-fixed Keras backend."""


class ModelNotFoundError(KerasGemmaError):
    """A model name, handle or path that does not resolve to a model."""


class InvalidModelError(KerasGemmaError):
    """A model reference that is malformed or points at something that is not a preset."""


class SettingsError(KerasGemmaError, ValueError):
    """A generation or sampler setting outside its allowed range."""


class ConversionError(KerasGemmaError):
    """A checkpoint that cannot be converted (format, architecture or quantization)."""


class OfflineError(KerasGemmaError):
    """Something needed the network while offline, or is missing from the cache."""


class InsufficientMemoryError(KerasGemmaError):
    """A model that cannot fit in the memory this machine has free."""


class KaggleAccessError(KerasGemmaError):
    """Kaggle refused a download: no or wrong credentials, or a licence not accepted."""


class QuantizationError(SettingsError):
    """A quantization mode that does not apply to this model or backend."""


class ServerError(KerasGemmaError):
    """A model server that went away or failed while answering."""
