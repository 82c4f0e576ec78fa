"""Files written safely and checked: atomic replacement and content hashes.

Every file the library and the study write (feature tables, model files,
registries, manifests, targets, design tables) goes through :func:`atomic_path`,
so an interrupted write never leaves a half-written file; :func:`file_sha256`
is the one hash of a file's bytes (registry pins, mel-cache shards, checkpoints).

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
