"""What is cached on this machine: Kaggle presets in kagglehub's cache, GGUF imports in the app's."""

from __future__ import annotations

import dataclasses
import pathlib

from keras_gemma_app import catalogue
from keras_gemma_app.cache_dir import app_cache_dir
from keras_gemma_app.errors import ModelNotFoundError
from keras_gemma_app.gguf_cache import is_imported
from keras_gemma_app.kaggle_cache import KaggleHandle, cached_preset, kaggle_cache_root


@dataclasses.dataclass(frozen=True)
class CachedModel:
    """One cached model.

    Attributes:
        name: the catalogue name where there is one, else the handle or folder name.
        source: "kaggle" or "gguf".
        location: its folder.
        size_bytes: bytes on disk.
        complete: False for a download or import that did not finish.
        handle: the ``kaggle://`` handle of a Kaggle preset, else None.
    """

    name: str
    source: str
    location: pathlib.Path
    size_bytes: int
    complete: bool
    handle: str | None = None


def folder_size(path: pathlib.Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _kaggle_models() -> list[CachedModel]:
    root = kaggle_cache_root() / "models"
    if not root.is_dir():
        return []
    by_handle = {entry.kaggle_handle: entry.name for entry in catalogue.entries() if entry.kaggle_handle}
    found = []
    for version_dir in sorted(root.glob("*/*/*/*/*")):
        if not (version_dir.is_dir() and version_dir.name.isdigit()):
            continue
        owner, model, framework, variation = version_dir.parts[-5:-1]
        handle = KaggleHandle(owner, model, framework, variation, int(version_dir.name))
        complete = cached_preset(handle) == version_dir
        found.append(CachedModel(by_handle.get(str(handle), variation), "kaggle", version_dir,
                                 folder_size(version_dir), complete, str(handle)))
    return found


def _gguf_imports() -> list[CachedModel]:
    from keras_gemma_app import bundled

    root = app_cache_dir() / "gguf"
    if not root.is_dir():
        return []
    try:
        bundled_dir = bundled.bundled_preset_dir()
    except ModelNotFoundError:  # the bundled package is not installed
        bundled_dir = None
    found = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = bundled.BUNDLED_NAME if directory == bundled_dir else directory.name
        found.append(CachedModel(name, "gguf", directory, folder_size(directory), is_imported(directory)))
    return found


def cached_models() -> list[CachedModel]:
    """Every cached model: Kaggle presets first, then imported GGUF files."""
    return _kaggle_models() + _gguf_imports()


def remove_cached(model: str) -> list[pathlib.Path]:
    """Deletes a cached model: a Kaggle preset (name or handle), or an imported GGUF (as `cached_models` names it).

    Raises:
        ModelNotFoundError: nothing by that name is cached.
    """
    import shutil

    from keras_gemma_app.kaggle_download import remove

    imported = [item for item in _gguf_imports() if item.name == model]
    if imported:
        for item in imported:
            shutil.rmtree(item.location)
        return [item.location for item in imported]
    return remove(model)
