"""Finding Kaggle-hosted presets in kagglehub's local cache, with no network.

kagglehub keeps a model version's files under
``$KAGGLEHUB_CACHE/models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION/`` and marks
each finished file with ``…/VARIATION/.complete/VERSION/FILE.complete`` (or a
whole download with ``…/VARIATION/VERSION.complete``). A cached, complete
preset is loaded straight from that directory: KerasHub would otherwise ask
Kaggle about optional files that were never downloaded, and fail offline.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

_HANDLE = re.compile(r"^(?:kaggle://)?([^/]+)/([^/]+)/([^/]+)/([^/]+?)(?:/(\d+))?/?$")

# What a KerasHub preset cannot load without.
REQUIRED_FILES = ("config.json", "model.weights.h5")


@dataclasses.dataclass(frozen=True)
class KaggleHandle:
    """``OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]``."""

    owner: str
    model: str
    framework: str
    variation: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> "KaggleHandle":
        match = _HANDLE.match(text)
        if not match:
            raise ValueError(f"not a Kaggle model handle: {text!r}")
        owner, model, framework, variation, version = match.groups()
        return cls(owner, model, framework, variation, int(version) if version else None)

    def __str__(self) -> str:
        tail = f"/{self.version}" if self.version is not None else ""
        return f"kaggle://{self.owner}/{self.model}/{self.framework}/{self.variation}{tail}"


def kaggle_cache_root() -> pathlib.Path:
    """kagglehub's cache folder ($KAGGLEHUB_CACHE, else ~/.cache/kagglehub)."""
    explicit = os.environ.get("KAGGLEHUB_CACHE")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    return pathlib.Path(os.path.expanduser("~")) / ".cache" / "kagglehub"


def variation_dir(handle: KaggleHandle) -> pathlib.Path:
    """The cache folder holding every downloaded version of ``handle``."""
    return kaggle_cache_root() / "models" / handle.owner / handle.model / handle.framework / handle.variation


def _is_complete(handle: KaggleHandle, version: int, files: list[str]) -> bool:
    base = variation_dir(handle)
    if (base / f"{version}.complete").exists():
        return True
    markers = base / ".complete" / str(version)
    return all((markers / f"{name}.complete").exists() for name in files)


def _preset_files(directory: pathlib.Path) -> list[str]:
    return sorted(
        str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()
    )


def cached_versions(handle: KaggleHandle) -> list[int]:
    """Versions of ``handle`` present in the cache, newest first."""
    base = variation_dir(handle)
    if not base.is_dir():
        return []
    return sorted((int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)


def cached_preset(handle: KaggleHandle) -> pathlib.Path | None:
    """The directory of a complete cached copy of ``handle``, or None.

    A versioned handle looks at that version only; an unversioned one takes
    the newest complete cached version.
    """
    versions = [handle.version] if handle.version is not None else cached_versions(handle)
    for version in versions:
        directory = variation_dir(handle) / str(version)
        if not all((directory / name).is_file() for name in REQUIRED_FILES):
            continue
        if _is_complete(handle, version, _preset_files(directory)):
            return directory
    return None


def describe_missing(handle: KaggleHandle) -> str:
    """One line saying what the cache lacks for ``handle``."""
    versions = cached_versions(handle)
    where = variation_dir(handle)
    if handle.version is not None and handle.version not in versions:
        have = f" (cached versions: {', '.join(map(str, versions))})" if versions else ""
        return f"version {handle.version} is not in the Kaggle cache at {where}{have}"
    if not versions:
        return f"nothing is cached for it at {where}"
    return f"the cached copy under {where} is incomplete (missing {', '.join(REQUIRED_FILES)} or completion markers)"
