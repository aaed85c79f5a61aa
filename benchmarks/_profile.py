"""Run `python -m reconciler ...` under cProfile, worker threads included.

    python benchmarks/_profile.py OUT.pstats reconciler apply deployments/ --yes

`cProfile` alone sees only the thread that enabled it; the apply's stops and creates run
on a thread pool.  `threading.setprofile` installs a hook in every thread started after
it, before the thread's first call: the hook gives the thread a profiler of its own
(`Profile.enable()` replaces the hook, so it runs once per thread).  At exit the main
thread's profile and every worker's are merged into one `pstats` file.  Figures from a
profiled run are inflated (the profiler's own cost): they say where the time goes, not
how long it takes; the benchmarks time an unprofiled run for that.
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import threading
import time
from types import FrameType
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _start_in_thread(frame: FrameType, event: str, arg: Any) -> None:
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    profile.enable()  # this thread only; replaces this hook


def main() -> int:
    out, module, *argv = sys.argv[1:]
    sys.argv = [module, *argv]
    main_profile = cProfile.Profile(time.thread_time)
    threading.setprofile(_start_in_thread)
    code: object = 0
    main_profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        # Disabling a profiler clears the calling thread's hook: the main one goes first.
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(main_profile)
        with _lock:
            for profile in _profiles:
                profile.disable()
                stats.add(profile)
        stats.dump_stats(out)
    return code if isinstance(code, int) else (0 if code is None else 1)


def report(path: str, *, limit: int = 25) -> str:
    """The top of a profile file, by own time and by cumulative time, as text."""
    import io

    text = io.StringIO()
    stats = pstats.Stats(path, stream=text)
    stats.strip_dirs()
    text.write(f"-- {path}: by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(limit)
    text.write(f"-- {path}: by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(limit)
    return text.getvalue()


if __name__ == "__main__":
    sys.exit(main())
