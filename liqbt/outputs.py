"""Output paths checked before any work, report folders without stale files, atomic writes.

* :func:`check_output_file` / :func:`check_report_dir`: an unwritable ``--out`` / ``--report``
  or an unsupported ``--out`` suffix is reported *before* the backtest or sweep runs (not after
  it, losing the result).
* :class:`ReportDir`: a report folder remembers the files it wrote (``.liqbt-report``); the
  next report into the same folder first removes exactly those, so no chart of an earlier run
  (another symbol...) is left next to the new ones. Files liqbt did not write are never touched.
* :func:`atomic_write_text` / :func:`atomic_replace`: write to a temporary file in the target's
  folder, then ``os.replace`` (an interrupted write never leaves a half file).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from liqbt.core.errors import ValidationError


def _read_umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


MANIFEST = ".liqbt-report"
# names an earlier liqbt report (before manifests) wrote; removed when no manifest exists
_LEGACY_PATTERNS = ("index.html", "price_*.png", "liquidation_price_*.png", "equity*.png",
                    "margin_ratio*.png", "heatmap_*.png")


def _writable_dir(directory: Path, option: str) -> list[str]:
    """Problems creating/writing ``directory`` (it is created when missing)."""
    if directory.exists() and not directory.is_dir():
        return [f"{option} {directory}: exists and is not a folder"]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        return [f"{option} {directory}: cannot write there ({exc.strerror or exc})"]
    return []


def check_output_file(path: str | Path, suffixes: Sequence[str], option: str = "--out") -> None:
    """Raise :class:`ValidationError` unless ``path`` has one of ``suffixes`` and its folder is
    writable (created when missing). Call before any work."""
    p = Path(path)
    problems = []
    if p.suffix.lower() not in suffixes:
        problems.append(f"{option} {p}: unsupported file type {p.suffix or '(none)'!r}; use "
                        + " or ".join(f"FILE{s}" for s in suffixes))
    if p.is_dir():
        problems.append(f"{option} {p}: is a folder, expected a file")
    else:
        problems += _writable_dir(p.parent if str(p.parent) else Path("."), option)
        if p.exists() and not os.access(p, os.W_OK):
            problems.append(f"{option} {p}: exists and is not writable")
    if problems:
        raise ValidationError(problems)


def check_report_dir(path: str | Path, option: str = "--report") -> None:
    """Raise :class:`ValidationError` unless ``path`` is (or can be made) a writable folder."""
    problems = _writable_dir(Path(path), option)
    if problems:
        raise ValidationError(problems)


class ReportDir:
    """A report folder: remove the previous report's files, then record the new ones.

    Usage::

        with ReportDir(path) as out:
            write_run_report(result, out.path)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._before: dict[str, tuple[int, int]] = {}

    def previous_files(self) -> list[Path]:
        """Files the previous liqbt report in this folder wrote."""
        manifest = self.path / MANIFEST
        if manifest.is_file():
            names = [ln.strip() for ln in manifest.read_text(encoding="utf-8").splitlines()]
            # only plain names inside the folder: a hand-edited manifest cannot reach outside
            return [self.path / n for n in names if n and "/" not in n and "\\" not in n
                    and n not in (".", "..")]
        if (self.path / "index.html").is_file():
            found: list[Path] = []
            for pattern in _LEGACY_PATTERNS:
                found.extend(self.path.glob(pattern))
            return found
        return []

    def __enter__(self) -> ReportDir:
        check_report_dir(self.path)
        for old in self.previous_files():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                old.unlink()
        self._before = {p.name: self._stamp(p) for p in self.path.iterdir() if p.is_file()}
        return self

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_mtime_ns, st.st_ino

    def __exit__(self, *exc: object) -> None:
        written = sorted(
            p.name for p in self.path.iterdir()
            if p.is_file() and p.name != MANIFEST
            and self._before.get(p.name) != self._stamp(p)
        )
        atomic_write_text(self.path / MANIFEST, "".join(f"{n}\n" for n in written))


@contextlib.contextmanager
def atomic_replace(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically,
    on error it is removed and ``path`` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; the file replaces a report or data file, so it gets the mode an
    # ordinary open() would give (0666 less the umask), or the mode of the file it replaces
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_read_umask()
    tmp.chmod(mode)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_replace(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write(path: str | Path, writer: Callable[[Path], object]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_replace(path) as tmp:
        writer(tmp)


__all__ = [
    "MANIFEST",
    "ReportDir",
    "atomic_replace",
    "atomic_write",
    "atomic_write_text",
    "check_output_file",
    "check_report_dir",
]
