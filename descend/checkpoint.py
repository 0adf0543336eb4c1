"""Checkpoint files that a crash cannot spoil and that load without running code.

:func:`save` writes with :func:`torch.save` into a temporary file beside the target,
flushes it to disk and renames it over the target in one step, so a reader (or the next
run after a crash) finds either the old checkpoint or the new one, whole, never a mix.
:func:`load` reads with ``torch.load(weights_only=True)``, which rebuilds tensors,
numbers, strings and containers but runs no code from the file, and says what is wrong
with a file that is missing, empty, truncated or no checkpoint at all (a TorchScript
archive, say).

The state dicts of descend's optimizers, schedulers (``descend.lr_scheduler``) and
averaged models (:class:`descend.AveragedModel`) hold such data only; hyperparameters
given as :mod:`descend.schedules` objects are allowlisted for ``weights_only``. What is
not (a lambda or ``functools.partial`` as a schedule, a NumPy array of per-step values)
makes :func:`save` refuse to write, before the old file is touched, rather than leave a
checkpoint that :func:`load` cannot read.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import pickletools
import re
import secrets
import stat
import zipfile
from typing import Any

import torch

__all__ = ["load", "save"]

PathLike = str | os.PathLike

_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""torch.save's format before torch 1.6 (still written with
``_use_new_zipfile_serialization=False``) starts with this number, pickled on its own in
the file's pickle protocol: after a PROTO opcode (protocol 2 and up) and a FRAME opcode
(protocol 4 and up), or as text (protocols 0 and 1)."""
_HEAD_SIZE = 64
"""Bytes read from the start of a file to tell what it is."""
_DAMAGE = (
    "PytorchStreamReader",
    "inline_container",
    "hasRecord",
    "corrupt",
    "unexpected EOF",
    "Invalid magic number",
    "Invalid protocol version",
)
"""Words of torch's RuntimeErrors about a damaged file (its zip reader, its legacy
reader), as opposed to those about where the file is loaded (a CUDA device missing)."""
_ADVICE = (
    "give schedules as descend.schedules objects and per-step values as lists or tensors, "
    "not lambdas, functools.partial or NumPy arrays; or, for a file from a trusted source "
    "only, pass weights_only=False"
)


def save(obj: Any, path: PathLike, *, weights_only: bool = True) -> None:
    """Write ``obj`` to ``path`` with :func:`torch.save`, atomically.

    The bytes go to a temporary file in the same directory, which is flushed and synced
    to disk (``os.fsync``), then renamed over ``path`` (``os.replace``, atomic on POSIX
    and Windows), and the directory is synced where the system allows it. If anything
    fails on the way, ``path`` keeps its old contents and the temporary file is removed.
    The new file has the permission bits (and, where allowed, the owner and group) of
    the file it replaces, as with :func:`torch.save`; a ``path`` that is a symbolic link
    stays one, and the file it points to is replaced.

    Args:
        obj: what to save; typically a dict of state dicts, say
            ``{"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}``.
        path: the file to write; its directory must exist.
        weights_only: read the new file back with ``torch.load(weights_only=True)``
            before it replaces ``path``, and refuse (``ValueError``, ``path`` untouched)
            if that fails, so that :func:`load` can always read what was saved. Pass
            ``False`` to save objects that need full unpickling, and load them the same
            way.

    Raises:
        FileNotFoundError: the directory of ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        ValueError: ``weights_only`` and the file would not load with it.
    """
    path = _as_path(path, "save")
    if not isinstance(weights_only, bool):
        raise TypeError(f"weights_only must be True or False, got {weights_only!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"descend.save: cannot write {path!r}: the directory {directory!r} does not exist"
        )
    # a symbolic link stays one: the file it points to is what gets replaced
    target = os.path.realpath(path)
    if target != os.path.abspath(path):
        directory = os.path.dirname(target)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"descend.save: cannot write {path!r}: it links to {target!r}, whose "
                f"directory {directory!r} does not exist"
            )
    if os.path.isdir(target):
        raise IsADirectoryError(f"descend.save: cannot write {path!r}: it is a directory")
    # a name of fixed length, so that a target whose name is near the limit (255 bytes)
    # still gets a temporary beside it
    temporary = os.path.join(directory, f".descend-{secrets.token_hex(8)}.tmp")
    try:
        # mode 0o666 less the umask, as a plain open() would create the file, or the
        # mode (and owner, where allowed) of the file it replaces, as torch.save keeps
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        with open(os.open(temporary, flags, 0o666), "wb") as file:
            _copy_permissions(target, file.fileno(), temporary)
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        if weights_only:
            _check_loads_safely(temporary, path)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _sync_directory(directory)


def load(
    path: PathLike,
    *,
    map_location: Any = None,
    weights_only: bool = True,
) -> Any:
    """Read what :func:`save` (or :func:`torch.save`) wrote to ``path``.

    Args:
        path: the checkpoint file.
        map_location: where to put the tensors, as for :func:`torch.load` (``"cpu"``, a
            device, a dict or a function).
        weights_only: read with ``torch.load(weights_only=True)`` (the default), which runs
            no code from the file: tensors, numbers, strings, containers,
            :mod:`descend.schedules` objects and the types torch allowlists. ``False``
            unpickles anything, which can run arbitrary code: only for trusted files.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        IsADirectoryError: ``path`` is a directory.
        ValueError: the file is empty, truncated or corrupt, is not a torch checkpoint
            (a TorchScript archive is named as such), holds objects that
            ``weights_only`` refuses, or is pickled in a protocol that ``weights_only``
            does not read (torch reads 2 and 3); the message names the path and what is
            wrong.
        RuntimeError: torch could not load a file that is not damaged (CUDA tensors on a
            machine without CUDA, say: pass ``map_location="cpu"``); the message gives
            torch's reason after the path.
    """
    path = _as_path(path, "load")
    if not isinstance(weights_only, bool):
        raise TypeError(f"weights_only must be True or False, got {weights_only!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"descend.load: {path!r} is a directory, not a checkpoint file")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(_HEAD_SIZE)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"descend.load: no checkpoint at {path!r}: the file does not exist"
        ) from None
    if size == 0:
        raise ValueError(
            f"descend.load: {path!r} is empty (0 bytes), not a checkpoint; a save that was "
            "cut short by another tool leaves such files (descend.save never does)"
        )
    if head.startswith(_ZIP_MAGIC):
        _check_archive(path, size)
    elif not _starts_legacy(head):
        raise ValueError(
            f"descend.load: {path!r} is not a torch checkpoint: it starts with "
            f"{head[:16]!r}, and torch.save writes a zip archive (starting with "
            "b'PK\\x03\\x04') or, in its format from before torch 1.6, a pickled magic number"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(path) if weights_only else []
        if refused:
            raise ValueError(
                f"descend.load: {path!r} holds objects that torch.load(weights_only=True) "
                f"refuses to rebuild ({', '.join(refused)}); {_ADVICE}"
            ) from error
        # torch's weights_only unpickler reads the opcodes of protocols 2 and 3 only
        unread = weights_only and "Unsupported operand" in str(error)
        protocol = _pickle_protocol(path, head) if unread else None
        if protocol not in (None, "2", "3"):
            raise ValueError(
                f"descend.load: {path!r} was pickled with protocol {protocol}, whose opcodes "
                f"torch.load(weights_only=True) does not read (torch {torch.__version__}: "
                f"{_first_line(error)}); save it with torch.save's default protocol, or, for "
                "a file from a trusted source only, pass weights_only=False"
            ) from error
        raise ValueError(
            f"descend.load: {path!r} ({size} bytes) is corrupt: {_first_line(error)}"
        ) from error
    except RuntimeError as error:
        if any(word in str(error) for word in _DAMAGE):
            raise ValueError(
                f"descend.load: {path!r} ({size} bytes) is truncated or corrupt: "
                f"RuntimeError: {_first_line(error)}"
            ) from error
        # the file may be whole: torch could not rebuild it here (CUDA tensors on a
        # machine without CUDA, say); its message says why
        raise RuntimeError(
            f"descend.load: {path!r} ({size} bytes) could not be loaded: {_first_line(error)}"
        ) from error
    except (EOFError, KeyError, ValueError, UnicodeDecodeError) as error:
        raise ValueError(
            f"descend.load: {path!r} ({size} bytes) is truncated or corrupt: "
            f"{type(error).__name__}: {_first_line(error)}"
        ) from error


def _as_path(path: Any, caller: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"descend.{caller}: path must be a str or os.PathLike, got "
            f"{type(path).__name__} {path!r}"
        )
    return os.fspath(path)


def _copy_permissions(target: str, descriptor: int, temporary: str) -> None:
    """Give the temporary file the permission bits of ``target``, if it exists, and its
    owner and group where the system allows it (a user may not give files away)."""
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(status.st_mode)
    if hasattr(os, "fchmod"):
        os.fchmod(descriptor, mode)
    else:  # Windows: only the read-only flag
        os.chmod(temporary, mode)
    if hasattr(os, "fchown"):
        with contextlib.suppress(OSError):
            os.fchown(descriptor, status.st_uid, status.st_gid)


def _check_archive(path: str, size: int) -> None:
    """Say what is wrong with a zip file that is not a whole torch checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise ValueError(
            f"descend.load: {path!r} ({size} bytes) is truncated or corrupt: it starts as a "
            "zip archive, as torch.save writes, but its end (the zip directory) is missing "
            "or damaged; was the save cut short?"
        ) from None
    if any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in names):
        raise ValueError(
            f"descend.load: {path!r} is a TorchScript archive (written by torch.jit.save), "
            "not a checkpoint: load it with torch.jit.load"
        )
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise ValueError(
            f"descend.load: {path!r} is a zip archive but not a torch checkpoint: it has no "
            f"data.pkl (it holds {names[:5]}{' ...' if len(names) > 5 else ''})"
        )


def _starts_legacy(head: bytes) -> bool:
    """Whether ``head`` starts as a file in torch.save's format from before torch 1.6: its
    magic number, pickled in any protocol. The opcodes are read, not run."""
    try:
        for opcode, argument, _ in pickletools.genops(io.BytesIO(head)):
            if opcode.name not in ("PROTO", "FRAME"):
                return opcode.name in ("LONG", "LONG1") and argument == _LEGACY_MAGIC_NUMBER
    except ValueError:  # not a pickle, or not one whose first opcodes fit in ``head``
        return False
    return False


def _pickle_protocol(path: str, head: bytes) -> str | None:
    """The pickle protocol of the checkpoint at ``path`` (of its data.pkl, in a zip
    archive; a file in the legacy format pickles everything in one): ``"2"``, ``"4"``,
    ..., ``"0 or 1"`` (which have no PROTO opcode), or None where it cannot be read."""
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                with archive.open(name) as data:
                    head = data.read(_HEAD_SIZE)
        except (OSError, StopIteration, zipfile.BadZipFile):
            return None
    try:
        opcode, argument, _ = next(pickletools.genops(io.BytesIO(head)))
    except (ValueError, StopIteration):  # no pickle opcode: a damaged file
        return None
    if opcode.name == "PROTO":
        return str(argument)
    return "0 or 1" if opcode.proto <= 1 else None


def _check_loads_safely(temporary: str, path: str) -> None:
    """Raise ValueError unless ``temporary`` loads with ``torch.load(weights_only=True)``.

    The tensors are memory-mapped, not read: this costs the unpickling only."""
    try:
        torch.load(temporary, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(temporary) or [_first_line(error)]
        raise ValueError(
            f"descend.save: not writing {path!r}: torch.load(weights_only=True) would refuse "
            f"what it holds ({', '.join(refused)}); {_ADVICE} (to descend.save and to "
            "descend.load)"
        ) from None


def _refused_globals(path: str) -> list[str]:
    """The classes and functions pickled in ``path`` that ``weights_only`` refuses."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a corrupt pickle: the caller reports it as such
        return []


def _first_line(error: BaseException) -> str:
    """The informative part of a torch error: the WeightsUnpickler line if any, else the
    first line, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = text.split(marker, 1)[1].split("Check the documentation", 1)[0]
        return f"{marker} {' '.join(detail.split())}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _sync_directory(directory: str) -> None:
    """Make the rename durable: sync the directory entry (POSIX; a no-op elsewhere)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
