"""Reset a warm sandbox container between tasks; runs INSIDE the container as uid 65534 (stdlib only).

Run as ``python3 -I -B /opt/autotts/reset.py`` after every task. It

1. SIGKILLs every process of uid 65534 in the container's PID namespace (``kill(-1)``: background and
   setsid children included) until none is left; PID 1 and the keeper run as another uid and survive;
2. wipes /tmp, /dev/shm and /dev/mqueue and removes the SysV IPC objects the task created, so one task
   can never leave state for the next;
3. prints one JSON line ``{"clean": bool, "problems": [...], "oom_kills": int | null}``.

The host treats anything but ``"clean": true`` (including this script being killed or never starting)
as a failed health probe and replaces the container.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import stat
import time

WIPE_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
IPC_RMID = 0


def task_processes() -> list[int]:
    """Live (non-zombie) processes of our uid other than this one."""
    me, uid, found = os.getpid(), os.getuid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue  # exited meanwhile
        if int(fields["Uid"].split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            found.append(int(name))
    return found


def kill_everything(deadline_s: float = 3.0) -> list[int]:
    """SIGKILL all our uid's processes until none is left; returns those still alive at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            os.kill(-1, signal.SIGKILL)  # every process we may signal in this PID namespace, not us
        except ProcessLookupError:
            pass
        left = task_processes()
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.01)


def clear(directory: str, problems: list[str]) -> None:
    """Remove everything under ``directory``; directories a task made unreadable are chmod-ed back first.

    Errors (including a nesting too deep to recurse into) are collected as problems, which makes the
    host replace the container instead of reusing it.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        problems.append(f"cannot list {directory}: {exc.strerror}")
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                os.chmod(entry.path, stat.S_IRWXU)
                clear(entry.path, problems)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except (OSError, RecursionError) as exc:
            problems.append(f"cannot remove {entry.path}: {exc}")


def remove_sysv_ipc(problems: list[str]) -> None:
    """Delete the SysV shared memory segments, message queues and semaphore sets of the IPC namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    for kind, ctl in (("shm", libc.shmctl), ("msg", libc.msgctl), ("sem", libc.semctl)):
        try:
            with open(f"/proc/sysvipc/{kind}") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            ipc_id = int(row.split()[1])
            args = (ipc_id, 0, IPC_RMID, None) if kind == "sem" else (ipc_id, IPC_RMID, None)
            if ctl(*args) != 0:
                problems.append(f"cannot remove SysV {kind} {ipc_id}: errno {ctypes.get_errno()}")


def oom_kills() -> int | None:
    """The memory cgroup's OOM-kill counter (cgroup v1 or v2), or None when it cannot be read."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            with open(path) as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except OSError:
            continue
    return None


def main() -> None:
    """Kill, wipe, verify, report."""
    problems: list[str] = []
    left = kill_everything()
    if left:
        problems.append(f"processes survived SIGKILL: {left[:10]}")
    for directory in WIPE_DIRS:
        if os.path.isdir(directory):
            clear(directory, problems)
            if os.listdir(directory):
                problems.append(f"{directory} is not empty after the wipe")
    remove_sysv_ipc(problems)
    if task_processes():  # something came back while we were wiping
        problems.append("a process appeared during the wipe")
    print(json.dumps({"clean": not problems, "problems": problems[:20], "oom_kills": oom_kills()}), flush=True)


if __name__ == "__main__":
    main()
