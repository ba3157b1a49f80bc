"""Atomic file writes: write to a temporary file in the same folder, flush to disk, then rename.

A crash (or an exception raised by the writer) at any point leaves the previous version of the file
intact; readers never see a half-written file. A process killed mid-write (SIGKILL, power loss) leaves its
temporary file behind; the temporary name carries the writer's process id, and the next write of the same file
removes the temporaries of writers that are no longer running.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "cache_root"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed over ``path``.

    Raises:
        Whatever the body raises; the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows: never guess there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (PermissionError), or no way to ask: assume it is alive
        return True
    return True


def _remove_orphans(path: Path) -> None:
    """Remove ``.<name>.<pid>.*.tmp`` files next to ``path`` whose writer process has exited."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temp file + rename)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def cache_root() -> Path:
    """lightlabel's cache folder: ``$LIGHTLABEL_CACHE``, else ``$XDG_CACHE_HOME/lightlabel``, else ``~/.cache/lightlabel``."""
    if os.environ.get("LIGHTLABEL_CACHE"):
        return Path(os.environ["LIGHTLABEL_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "lightlabel" if xdg else Path.home() / ".cache" / "lightlabel"
