"""The Secrets device over a folder: one file per secret, read when asked for, never cached.

The runtime constructs FolderSecrets with the path the target mounted the run's secrets at (a
read-only tmpfs in the sandbox; a per-run drive in a VM). Image-side: stdlib only (os).
"""

from __future__ import annotations

import os

from summon.devices import InvalidSecretName, MissingSecret, Secrets

TYPE_CHECKING = False
if TYPE_CHECKING:
    _Names = list[str]

# A secret is a key or a token, not a data set: a bound keeps a wrong mount from eating memory.
MAX_SECRET_BYTES = 1 << 20


def check_name(name: str) -> str:
    """`name` if it is a valid secret name (one path component), else InvalidSecretName."""
    if not isinstance(name, str) or not name:
        raise InvalidSecretName(f"secret name must be a non-empty string, got {name!r}")
    if name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InvalidSecretName(
            f"secret name {name!r} must be one path component: no '/', '\\', NUL, '.' or '..'"
        )
    return name


class FolderSecrets(Secrets):
    """Secrets read from the regular files directly inside `folder`.

    A folder that does not exist holds no secrets (an instance run without --secret). The
    values are never kept: each get() reads the file again, so nothing lingers in this object
    to be printed by a repr or a traceback.
    """

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def __repr__(self) -> str:
        return f"FolderSecrets({self._folder!r})"  # the folder, never a value

    def get(self, name: str) -> bytes:
        path = os.path.join(self._folder, check_name(name))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise MissingSecret(name) from None
        except OSError as e:
            if e.errno == 40:  # ELOOP: a symlink, which could point anywhere
                raise InvalidSecretName(f"secret {name!r} is a symbolic link") from None
            raise
        try:
            st = os.fstat(fd)
            if not (st.st_mode & 0o170000) == 0o100000:
                raise MissingSecret(name)
            if st.st_size > MAX_SECRET_BYTES:
                raise ValueError(
                    f"secret {name!r} is {st.st_size} bytes, over the {MAX_SECRET_BYTES} limit"
                )
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def names(self) -> _Names:
        try:
            entries = os.scandir(self._folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return sorted(
                e.name
                for e in entries
                if e.is_file(follow_symlinks=False) and not e.name.startswith("..")
            )
