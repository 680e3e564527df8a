"""Writing a directory all at once: build it beside the target, rename at the end.

An interrupted write leaves no directory that looks like a finished preset.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil

from keras_gemma_app.errors import InvalidModelError


def check_new_dir(out_dir: pathlib.Path, force: bool) -> None:
    """Refuses an existing ``out_dir`` unless ``force``."""
    if (out_dir.exists() or out_dir.is_symlink()) and not force:
        raise InvalidModelError(
            f"Expected a new output directory, received one that exists: {out_dir} "
            "(pass --force to replace it)."
        )


def _sibling(out_dir: pathlib.Path, purpose: str) -> pathlib.Path:
    # Same filesystem as out_dir (so rename is atomic), usual umask permissions.
    while True:
        path = out_dir.parent / f".{out_dir.name}.{purpose}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _move_into_place(staged: pathlib.Path, out_dir: pathlib.Path, force: bool) -> None:
    check_new_dir(out_dir, force)
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = _sibling(out_dir, "replaced")
        os.replace(out_dir, old / "previous")
    try:
        os.rename(staged, out_dir)
    except BaseException:
        if old is not None:
            os.replace(old / "previous", out_dir)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_directory(out_dir: str | os.PathLike, *, force: bool = False, purpose: str = "writing"):
    """Yields a fresh directory that becomes ``out_dir`` when the block succeeds.

    With ``force`` an existing ``out_dir`` is replaced only once the new one is
    complete. On any error or interrupt the staged directory is removed.

    Raises:
        InvalidModelError: ``out_dir`` exists and ``force`` is false.
    """
    out_dir = pathlib.Path(out_dir)
    check_new_dir(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = _sibling(out_dir, purpose)
    try:
        yield staged
        _move_into_place(staged, out_dir, force)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
