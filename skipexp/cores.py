"""A machine's cores shared between the skipexp runs on it, so that two runs at once do not stall each other.

Two runs that each take every core oversubscribe them: their OpenMP teams wait for each other's descheduled
threads at every barrier. On a 2-core CPU, two default runs started together took 3.2x as long as one alone
(issue 17). A run that sizes its own threads (``trainer.threads=0``) leaves a file named by its process id in
one folder per user and machine, and uses its cores divided by the number of runs alive there; it looks again
at most once a second between steps, so a run started later, or one that ends, moves the others' share.
``trainer.threads=N`` opts out: N threads, and no file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import time
from pathlib import Path

LOOK_EVERY_S = 1.0  # how often a run counts the runs alive (a directory listing and a signal 0 per run)


def share_folder() -> Path:
    """Where this user's runs on this machine leave their files."""
    uid = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    return Path(tempfile.gettempdir()) / f"skipexp-cores-{uid}"


def thread_share(cores: int, processes: int) -> int:
    """Intra-op threads for one of ``processes`` processes sharing ``cores`` cores, never oversubscribing."""
    return max(1, cores // max(1, processes))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (the folder is per user, so only after pid reuse)
        return True
    return True


class CoreShare:
    """This process's place among the runs sharing the machine's cores: ``current`` is its fair share of threads."""

    def __init__(self, folder: Path, cores: int, cap: int) -> None:
        self.folder, self.cores, self.cap = folder, cores, cap
        self.mine: Path | None = None
        self.join()
        atexit.register(self.leave)

    def join(self) -> None:
        """Leave this run's file (again, after ``leave``) and take the share of the runs alive now."""
        self.mine = self.folder / str(os.getpid())
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.mine.touch()
        except OSError:  # no writable temp folder: this run counts itself alone
            self.mine = None
        self.current = self.share()

    def runs(self) -> int:
        """Runs alive in the folder, this one included (even if a temp cleaner took its file); files of processes
        that died are removed."""
        if self.mine is None:
            return 1
        try:
            entries = list(self.folder.iterdir())
        except OSError:  # the folder was removed under the run (a temp cleaner): alone until it is back
            return 1
        others = 0
        for entry in entries:
            if not entry.name.isdigit() or entry == self.mine:
                continue
            if _alive(int(entry.name)):
                others += 1
            else:
                with contextlib.suppress(OSError):  # gone already, or not ours to remove
                    entry.unlink()
        return 1 + others

    def share(self) -> int:
        """This run's threads now: its cores over the runs alive, at most ``cap``, at least 1."""
        self.looked = time.monotonic()
        return min(self.cap, thread_share(self.cores, self.runs()))  # cap is at least 1

    def update(self) -> int | None:
        """Look again if a second has passed; the new thread count when it changed, else None."""
        if time.monotonic() - self.looked < LOOK_EVERY_S:
            return None
        threads = self.share()
        if threads == self.current:
            return None
        self.current = threads
        return threads

    def leave(self) -> None:
        """Take this run's file away: when its training ends, and at exit."""
        if self.mine is not None:
            with contextlib.suppress(FileNotFoundError):
                self.mine.unlink()


_PROCESS: list[CoreShare] = []  # this process's CoreShare, made by its first run


def join(cores: int, cap: int) -> CoreShare:
    """This process's share, joined now with at most ``cap`` threads: made at its first run, joined again by the
    next (a sequential sweep's jobs run in one process)."""
    if _PROCESS:
        _PROCESS[0].cap = cap
        _PROCESS[0].join()
    else:
        _PROCESS.append(CoreShare(share_folder(), cores, cap))
    return _PROCESS[0]


def process_share() -> CoreShare | None:
    """This process's share, if a run of it has joined one."""
    return _PROCESS[0] if _PROCESS else None
