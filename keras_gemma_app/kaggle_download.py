"""Downloading Kaggle-hosted Gemma presets into kagglehub's cache, and removing them.

Downloads go through kagglehub, so they land where KerasHub and every other
kagglehub user look (``$KAGGLEHUB_CACHE``, else ``~/.cache/kagglehub``), and
later loads use them with no network (see :mod:`keras_gemma_app.kaggle_cache`).
kagglehub draws its own per-file progress bars on stderr.

What goes wrong is turned into one line with the fix: no credentials, a
refused key, a licence not yet accepted, an unknown model, no network, and a
download cut off half-way (``pull --force`` starts it afresh).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import shutil

from keras_gemma_app import catalogue
from keras_gemma_app.errors import KaggleAccessError, ModelNotFoundError, OfflineError
from keras_gemma_app.kaggle_cache import KaggleHandle, cached_preset, variation_dir
from keras_gemma_app.network import KAGGLE_HOST, kaggle_endpoint_overridden, reachable
from keras_gemma_app.offline import offline_requested

CREDENTIALS_HELP = (
    "expected ~/.kaggle/kaggle.json (or kaggle.json in $KAGGLE_CONFIG_DIR), or KAGGLE_USERNAME and KAGGLE_KEY "
    "in the environment; create an API token at https://www.kaggle.com/settings"
)


@dataclasses.dataclass(frozen=True)
class Pulled:
    """The result of :func:`pull`: the handle, where its files are, and whether they were downloaded now."""

    handle: KaggleHandle
    path: pathlib.Path
    downloaded: bool


def handle_for(model: str) -> KaggleHandle:
    """The Kaggle handle of a catalogue preset name or a ``kaggle://`` handle."""
    if model.startswith("kaggle://"):
        try:
            return KaggleHandle.parse(model)
        except ValueError:
            raise ModelNotFoundError(
                "Malformed Kaggle handle: expected kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION], "
                f"received {model!r}."
            ) from None
    entry = catalogue.get(model)
    if entry.kaggle_handle is None:
        raise ModelNotFoundError(
            f"{model!r} does not come from Kaggle ({entry.source}); it needs no download."
        )
    return KaggleHandle.parse(entry.kaggle_handle)


def _model_page(handle: KaggleHandle) -> str:
    return f"https://www.kaggle.com/models/{handle.owner}/{handle.model}"


def _status_and_message(error) -> tuple[int | None, str]:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    try:
        message = str(response.json().get("message", ""))
    except Exception:  # noqa: BLE001 - any body that is not Kaggle's JSON
        message = getattr(response, "text", "") or ""
    return status, message


def _is_cut_off(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        name = type(error).__name__
        if name in ("ChunkedEncodingError", "IncompleteRead", "ProtocolError", "DataCorruptionError",
                    "ContentDecodingError", "ReadTimeout"):
            return True
        error = error.__cause__ or error.__context__
    return False


def _explain(error: Exception, handle: KaggleHandle, model: str) -> Exception:
    """The typed, one-line error for a failed kagglehub download."""
    import requests

    status, message = _status_and_message(error)
    if status == 401:
        return KaggleAccessError(
            f"Kaggle refused the credentials (HTTP 401) while downloading {model}: {CREDENTIALS_HELP}."
        )
    if status == 403:
        reason = "you have not accepted the licence" if "consent" in message.lower() else "access was denied"
        return KaggleAccessError(
            f"Kaggle says {reason} for {handle} (HTTP 403): sign in to Kaggle with the account of your "
            f"API token, accept the Gemma licence on {_model_page(handle)}, then run the command again."
        )
    if status == 404:
        return ModelNotFoundError(
            f"Kaggle has no model {handle} (HTTP 404): check the name and version "
            f"(`keras-gemma list` shows the known presets)."
        )
    if _is_cut_off(error):
        return OfflineError(
            f"The download of {model} was cut off before it finished; the cache holds a partial copy. "
            f"Run `keras-gemma pull {model} --force` to download it afresh."
        )
    if isinstance(error, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return OfflineError(
            f"Could not reach Kaggle while downloading {model}: check the network connection and retry."
        )
    if status is not None:
        return KaggleAccessError(f"Kaggle answered HTTP {status} while downloading {model}: {message or error}.")
    return error


@contextlib.contextmanager
def _kagglehub_logs_quiet():
    """kagglehub logs each step at INFO; callers report progress themselves."""
    logger = logging.getLogger("kagglehub")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def pull(model: str, *, force: bool = False) -> Pulled:
    """Downloads a Kaggle-hosted preset into kagglehub's cache, unless it is already there.

    Args:
        model: a catalogue preset name (e.g. ``gemma3_instruct_1b``) or a
            ``kaggle://OWNER/MODEL/keras/VARIATION[/VERSION]`` handle.
        force: delete any cached copy of that version first and download
            it whole again (after a download was cut off, say).

    Returns:
        A :class:`Pulled` with the preset directory.

    Raises:
        KaggleAccessError: no credentials, refused credentials, licence not accepted.
        ModelNotFoundError: not a Kaggle preset, or unknown to Kaggle.
        OfflineError: offline mode, no network, or a download cut off.
    """
    handle = handle_for(model)
    cached = cached_preset(handle)
    if cached is not None and not force:
        return Pulled(handle, cached, downloaded=False)
    if offline_requested():
        raise OfflineError(f"Downloading {model} needs the network, and offline mode is on (KERAS_GEMMA_OFFLINE).")
    import kagglehub
    from kagglehub.config import get_kaggle_credentials

    if get_kaggle_credentials() is None:
        raise KaggleAccessError(f"No Kaggle credentials to download {model}: {CREDENTIALS_HELP}.")
    if not kaggle_endpoint_overridden() and not reachable(KAGGLE_HOST):
        raise OfflineError(f"Cannot reach {KAGGLE_HOST} to download {model}: check the network connection and retry.")
    if force:
        remove_handle(handle)
    spec = str(handle).removeprefix("kaggle://")
    try:
        with _kagglehub_logs_quiet():
            path = kagglehub.model_download(spec, force_download=force)
    except Exception as error:  # noqa: BLE001 - kagglehub raises requests and its own errors
        raise _explain(error, handle, model) from None
    return Pulled(handle, pathlib.Path(path), downloaded=True)


def remove_handle(handle: KaggleHandle) -> list[pathlib.Path]:
    """Deletes the cached files of ``handle`` (one version, or all if unversioned); returns what went."""
    base = variation_dir(handle)
    if not base.exists():
        return []
    if handle.version is None:
        shutil.rmtree(base)
        return [base]
    removed = []
    for path in (base / str(handle.version), base / f"{handle.version}.complete",
                 base / ".complete" / str(handle.version), base / f"{handle.version}.archive"):
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    return removed


def remove(model: str) -> list[pathlib.Path]:
    """Removes a cached Kaggle preset (a catalogue name or ``kaggle://`` handle).

    Raises:
        ModelNotFoundError: nothing of it is cached.
    """
    handle = handle_for(model)
    removed = remove_handle(handle)
    if not removed:
        raise ModelNotFoundError(f"{model} is not in the Kaggle cache ({variation_dir(handle)}); nothing to remove.")
    return removed
