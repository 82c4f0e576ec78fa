"""Files written safely and checked: atomic replacement and content hashes.

Every file the library and the study write (feature tables, model files,
registries, manifests, targets, design tables) goes through :func:`atomic_path`,
so an interrupted write never leaves a half-written file; :func:`write_texts`
writes small text outputs (tables, cards, scores) that way without replacing a
file of other contents unasked; :func:`file_sha256` is the one hash of a file's bytes (registry pins, mel-cache shards, checkpoints).

Examples
--------
>>> import os, tempfile
>>> target = os.path.join(tempfile.mkdtemp(), "x.txt")
>>> with atomic_path(target) as tmp:
...     _ = tmp.write_text("done")
>>> open(target).read(), file_sha256(target)[:12]
('done', 'a4c3ed04a95a')
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

#: Suffix of the temporary files of :func:`atomic_path` (a crash can leave one behind; it is never read).
PARTIAL_SUFFIX = ".partial"


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; when the block succeeds, flush it to disk and rename it over ``path``.

    A crash leaves either the old file or the new one, never a mix; the
    temporary file (``.<name>.<random>.partial``) is removed on error. The new
    file gets the permissions of any new file (``0o666`` less the umask); the
    process umask is never changed.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "x.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:    # a writer that replaced the file (safetensors: 0o600)
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_file(path: Path) -> Path:
    """Create an empty, uniquely named file next to ``path`` (mode 0o666 less the umask, applied by the OS)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_texts(texts: Mapping[str | os.PathLike, str], *, overwrite: bool = False) -> None:
    """Write each text to its file atomically (UTF-8); none is written when one would replace a file of other
    contents and ``overwrite`` is false. A file that already holds its text is left as it is.

    Raises
    ------
    FileExistsError
        Naming every file that holds other contents.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "scores.json")
    >>> write_texts({target: "[1]"})
    >>> write_texts({target: "[1]"})        # the same text again: nothing to replace
    >>> write_texts({target: "[2]"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: ... exists with other contents; give overwrite=True (--overwrite) to replace it
    """
    texts = {Path(path): text for path, text in texts.items()}
    clashes = [str(path) for path, text in texts.items()
               if not overwrite and path.exists() and path.read_bytes() != text.encode("utf-8")]
    if clashes:
        raise FileExistsError(f"{', '.join(clashes)} exists with other contents; give overwrite=True (--overwrite) "
                              f"to replace it")
    for path, text in texts.items():
        if path.exists() and path.read_bytes() == text.encode("utf-8"):
            continue
        with atomic_path(path) as tmp:
            tmp.write_bytes(text.encode("utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as a hex string.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     file_sha256(f.name)[:12]
    'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
