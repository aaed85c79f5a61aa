"""Running the checks over many files: split across the machine's cores with `fork`.

The parent checks the first share itself while forked workers check the others and send
their results back through a pipe (pickled as plain tuples); a worker that dies is
replaced by the parent doing its share.  Only worth it above PARALLEL_MIN_FILES files, and
never in a process with other threads (the watch daemon), where fork is not safe.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.validation.one_file import FileResult
from reconciler.validation.report import Manifest, Problem

# Fork workers only when there is enough work to repay it (~2 ms per worker).
PARALLEL_MIN_FILES = 128
MAX_WORKERS = 8

# A worker also pickles what it found and the parent unpickles it: give the parent a
# larger share so that both finish together (measured: about 1.15 to 1).
PARENT_WEIGHT = 1.15


def run_in_order(
    chosen: Sequence[int],
    forkable: Sequence[int],
    check: Callable[[int], FileResult],
    min_files: int = PARALLEL_MIN_FILES,
) -> list[FileResult]:
    """`check(index)` for each of `chosen`, in that order; those also in `forkable` are
    shared among forked workers when there are at least `min_files` of them."""
    count = workers(len(forkable), min_files)
    results: dict[int, FileResult] = {}
    if count > 1:
        shares = _shares(list(forkable), count)
        children: list[tuple[int, int, list[int]]] = []
        try:
            for share in shares[1:]:
                children.append((*_fork(check, share), share))
            for index in shares[0]:
                results[index] = check(index)
            while children:
                pid, read_end, share = children[0]
                results.update(_collect(pid, read_end, check, share))
                children.pop(0)
        finally:
            for pid, read_end, _ in children:  # interrupted: stop the workers left
                with contextlib.suppress(OSError):
                    os.close(read_end)
                _stop(pid)
    for index in chosen:
        if index not in results:
            results[index] = check(index)
    return [results[index] for index in chosen]


def workers(count: int, min_files: int = PARALLEL_MIN_FILES) -> int:
    """How many processes (the parent included) should check `count` files."""
    if count < min_files or not hasattr(os, "fork"):
        return 1
    if _threaded():
        return 1  # fork in a threaded process (the watch daemon) is not safe
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS, count // max(1, min_files // 2)))


def _threaded() -> bool:
    """Any other thread, Python's or a native library's (Linux counts them all)."""
    import threading

    if threading.active_count() > 1:
        return True
    try:
        return len(os.listdir("/proc/self/task")) > 1
    except OSError:
        return False


def _shares(indexes: list[int], workers: int) -> list[list[int]]:
    """Contiguous shares, the first (the parent's) PARENT_WEIGHT times the others."""
    each = int(len(indexes) / (workers - 1 + PARENT_WEIGHT))
    first = len(indexes) - each * (workers - 1)
    shares = [indexes[:first]]
    for k in range(workers - 1):
        shares.append(indexes[first + k * each : first + (k + 1) * each])
    return shares


def _pack(result: FileResult) -> tuple[Any, ...]:
    """Plain tuples pickle several times faster than dataclass instances."""
    return (
        result.file,
        result.documents,
        [(m.line, m.data) for m in result.manifests],
        [tuple(p) for p in result.problems],
        result.keys,
    )


def _unpack(packed: tuple[Any, ...]) -> FileResult:
    file, documents, found, problems, keys = packed
    return FileResult(
        file,
        documents,
        [Manifest(file, line, data) for line, data in found],
        [Problem(*p) for p in problems],
        keys,
    )


def _fork(check: Callable[[int], FileResult], share: list[int]) -> tuple[int, int]:
    import pickle
    import signal

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: check its share, send the results, exit without cleanup
        code = 1
        try:
            os.close(read_end)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            payload = pickle.dumps(
                [_pack(check(i)) for i in share],
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def _collect(
    pid: int, read_end: int, check: Callable[[int], FileResult], share: list[int]
) -> dict[int, FileResult]:
    import pickle

    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        packed = pickle.loads(payload) if status == 0 else []
        received = {i: _unpack(p) for i, p in zip(share, packed, strict=True)}
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
        received = {}
    if not received and share:  # the worker died: do its share here
        received = {i: check(i) for i in share}
    return received


def _stop(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
