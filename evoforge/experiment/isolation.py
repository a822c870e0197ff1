"""Which isolation the sandbox puts around an evaluation — `bwrap`, `unshare` or `none` — and the pieces that
build it: the wrapper command, the read-only mounts and the capability drop (stdlib only: the supervisor imports it).

What each mode guarantees (the candidate runs as the user evoforge runs as, often root):

* `bwrap` (Debian's bubblewrap): fresh PID namespace (when the trial ends the namespace dies and the kernel kills
  everything in it), `--ro-bind / /` (the whole filesystem read-only), private `/dev`, `/proc` and `/tmp`, all
  capabilities dropped, `--die-with-parent --new-session`, a fresh network namespace when `limits.network` is false.
  Only the trial folder is writable (plus the private /tmp and /dev/shm, `tmp_mb` each, gone when the trial ends).
  So the candidate can modify neither the task's evaluator nor the record nor anything else on the host. The home
  folders, secrets (/etc/shadow...), other trials and the run folder are emptied (read-only tmpfs), and in the
  candidate's own jail (run_candidate) also task.yaml, the evaluator and the task's `hidden` paths.
* `unshare` (util-linux; needs root): fresh PID and mount namespaces (+ network when off). Inside, the supervisor
  bind-mounts the task folder and the run folders (the trial folder's parent, and its parent when it holds
  `record.db`) read-only with the trial folder writable on top, then drops every capability (bounding set emptied,
  no_new_privs) so a root candidate cannot remount them. The rest of the host filesystem stays writable.
* `none`: rlimits and the process-tree supervisor only; the candidate can write wherever the user can, the task's
  evaluator and the record included. `auto` picks the strongest mode that works here and warns once when that is
  not bwrap, and refuses when neither works (`none` must be named). Candidates get no network unless
  `limits.network: true`; `none` cannot cut it, so it needs that setting.

Read-only mounts rather than copies: the evaluator stays the task's own file (the record's task snapshot stays
true) and copies could themselves be edited by the candidate, whereas a read-only mount cannot be undone without
capabilities the candidate no longer has.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evoforge.errors import EvoforgeError
from evoforge.run_folder import RECORD_FILE

if TYPE_CHECKING:
    from evoforge.config import Limits

log = logging.getLogger(__name__)

MODES = ("bwrap", "unshare", "none")
PROBE_TIMEOUT_S = 15.0
DEVICE_GLOBS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")  # GPUs stay usable under bwrap
HOME_FOLDERS = (Path("/root"), Path("/home"))
SECRET_PATHS = tuple(Path(p) for p in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
                                       "/etc/sudoers", "/etc/sudoers.d", "/etc/ssh", "/var/lib/sss",
                                       "/etc/security/opasswd", "/run/secrets"))
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 0x1, 0x20, 0x1000, 0x4000
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
_warned: set[str] = set()


class IsolationUnavailable(EvoforgeError):
    """The isolation the task asks for (limits.isolation / limits.network) cannot be set up on this machine."""


@dataclass(frozen=True)
class Jail:
    """Where one evaluation may write: `writable` (the trial folder); `readonly` folders are explicitly protected."""

    mode: str
    network: bool
    writable: Path
    readonly: tuple[Path, ...]
    cwd: Path
    masked: tuple[Path, ...] = ()  # bwrap: emptied before `readonly` is bound (home folders, the run folder)
    hidden: tuple[Path, ...] = ()  # bwrap: emptied after `readonly` is bound (files only the evaluator sees)
    tmp_mb: int | None = None  # bwrap: size of the private /tmp and /dev/shm (in memory)
    staging: Path | None = None  # bwrap: where `writable` is bound instead of its own path (a warm worker's)
    caps: tuple[str, ...] = ()  # bwrap: capabilities the jail's PID 1 keeps (a warm worker's zygote)


def _probe_argv(mode: str) -> list[str]:
    probe = Jail(mode, network=False, writable=Path("/tmp"), readonly=(), cwd=Path("/"))
    return [*wrapper_argv(probe), "true"]


@functools.cache
def probe(mode: str) -> str | None:
    """None when `mode` works here, else why not (cached: each probe runs once per process)."""
    if mode == "none":
        return None
    tool = "bwrap" if mode == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        hint = " (Debian: apt-get install bubblewrap)" if mode == "bwrap" else ""
        return f"{tool} is not installed{hint}"
    try:
        done = subprocess.run(_probe_argv(mode), capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{tool} failed to start: {exc}"
    if done.returncode != 0:
        return f"{tool} cannot create namespaces here: {done.stderr.decode(errors='replace').strip()[:200]}"
    return None


@functools.cache
def bwrap_sizes_tmpfs() -> bool:
    """Whether this bwrap can cap a tmpfs (`--size`, bubblewrap 0.8+); older ones leave the jail's /tmp uncapped."""
    try:
        done = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in done.stdout + done.stderr


def resolve(choice: str, network: bool) -> str:
    """The mode to use for `limits.isolation` = `choice` ("auto" or a mode); raises IsolationUnavailable.

    `auto` picks bwrap, else unshare (with a warning), and never falls back to `none`: that mode runs candidates
    without a sandbox and must be asked for by name.
    """
    if choice == "auto":
        for mode in ("bwrap", "unshare"):
            if probe(mode) is None:
                break
        else:
            raise IsolationUnavailable(
                f"task.yaml limits.isolation: auto found no sandbox (bwrap: {probe('bwrap')}; unshare: "
                f"{probe('unshare')}); install bubblewrap (Debian: apt-get install bubblewrap) or run as root, or "
                "set limits.isolation: none (no sandbox; with limits.network: true) to run candidates unjailed")
        if mode != "bwrap" and "auto" not in _warned:
            _warned.add("auto")
            log.warning("sandbox isolation: %s (bwrap unavailable: %s)", mode, probe("bwrap"))
    elif choice in MODES:
        mode = choice
        reason = probe(mode)
        if reason is not None:
            raise IsolationUnavailable(f"task.yaml limits.isolation: {mode} is unavailable: {reason}; install it "
                                       "or set limits.isolation: auto")
    else:
        raise IsolationUnavailable(f"task.yaml limits.isolation: {choice!r} is not one of auto, {', '.join(MODES)}")
    if mode == "none" and not network:
        raise IsolationUnavailable("task.yaml limits.isolation: none cannot cut the network (limits.network is "
                                   "false by default); set limits.network: true as well, or use bwrap/unshare")
    return mode


def shares_process(evaluator: Path) -> bool:
    """True when the evaluator does not run its candidate through `run_candidate` (a static look at its source):
    the candidate then runs in the evaluator's own process and can reach whatever that process holds."""
    try:
        return "run_candidate" not in evaluator.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True


def describe_isolation(limits: Limits, evaluator: Path | None = None) -> str:
    """One line saying which isolation and limits are in force for this task (print it at run start), and
    whether candidates share the Python `evaluator`'s process."""
    mode = resolve(limits.isolation, limits.network)
    what = {
        "bwrap": "bubblewrap: read-only root, private /tmp and /proc, PID namespace, no capabilities; "
                 "only the trial folder is writable; the home folders, the run folder and secrets are hidden",
        "unshare": "unshare (WEAKER than bubblewrap): PID and mount namespaces, task and run folders read-only, "
                   "no capabilities; the candidate can read every file this user can (home folder, the record, "
                   "hidden task files) and write outside them, home folder included (install bubblewrap)",
        "none": "none (NO SANDBOX): rlimits and process-tree cleanup only; the candidate can read and write "
                "every file this user can (home folder, evaluator, record), reach the network and read the "
                "evoforge process's environment, API keys included, through /proc (install bubblewrap)",
    }[mode]
    net = "on (limits.network: true)" if limits.network else "off (limits.network: true allows it)"
    if mode == "bwrap" and not bwrap_sizes_tmpfs():
        what += f"; /tmp is NOT capped at tmp_mb={limits.tmp_mb} (this bwrap lacks --size; bubblewrap 0.8+ has it)"

    def show(value: int | None, unit: str = "") -> str:
        return "unlimited" if value is None else f"{value}{unit}"

    return (f"sandbox isolation: {what}; network {net}; limits: memory {show(limits.memory_mb, ' MB')}, "
            f"cpu {show(limits.cpu_s, ' s')}, processes {show(limits.max_processes)}, "
            f"open files {show(limits.max_open_files)}, output {limits.output_bytes} bytes per stream"
            + _sharing(evaluator))


def _sharing(evaluator: Path | None) -> str:
    if evaluator is None or not shares_process(evaluator):
        return ""
    return ("; candidates share the evaluator's process (it does not call evoforge.sandbox.run_candidate): "
            "a candidate can read what the evaluator reads and see its memory")


def runtime_paths() -> list[Path]:
    """The folders a jailed Python needs, as this process sees them: the interpreter's folder (as called and as
    resolved), the virtualenv and base prefixes, the folder holding `evoforge`, and every folder on sys.path.

    Call it in the evoforge process: the supervisor runs as `python -I -S`, where sys.prefix is the base
    interpreter's and sys.path lacks the virtualenv, so it cannot find these itself. Computed once for each
    state of what it depends on (every trial asks; resolving them all took milliseconds).
    """
    return list(_runtime_paths(sys.executable, sys.prefix, sys.base_prefix, tuple(sys.path),
                               os.environ.get("HOME"), os.getcwd()))


@functools.lru_cache(maxsize=8)
def _runtime_paths(executable: str, prefix: str, base_prefix: str, path: tuple[str, ...], _home: str | None,
                   _cwd: str) -> tuple[Path, ...]:
    exe = Path(os.path.abspath(executable))
    found = [exe.parent, exe.resolve().parent, Path(prefix), Path(base_prefix), Path(__file__).parents[2]]
    found += [Path(entry) for entry in path if entry]
    home = Path.home().resolve()
    out: list[Path] = []
    for path in found:
        for variant in (Path(os.path.abspath(path)), path.resolve()):
            if variant.is_dir() and variant != Path("/") and not home.is_relative_to(variant):
                out.append(variant)
    return tuple(dict.fromkeys(out))


def jail_for(mode: str, network: bool, env: Mapping[str, str], cwd: Path,
             runtime: Sequence[Path] | None = None, hidden: Sequence[Path] = ()) -> Jail:
    """The jail of one evaluation: the trial folder ($EVOFORGE_TRIAL_DIR, else `cwd`) writable; the task folder
    ($EVOFORGE_TASK_DIR) and `runtime` (default: `runtime_paths()` of this process) read-only.

    Under bwrap the home folders, secrets, the other trials and the run folder holding the record are masked
    (emptied), and so are `hidden` paths (a task's evaluator and held-out data, for the candidate's own jail);
    elsewhere the trial folder's parent and the run folder are protected read-only instead.
    """
    writable = Path(env.get("EVOFORGE_TRIAL_DIR") or cwd).resolve()
    run_folders = [writable.parent]
    if (writable.parent.parent / RECORD_FILE).exists():
        run_folders.append(writable.parent.parent)
    # The interpreter, its virtualenv and the evoforge package must stay visible even when they live under /tmp
    # (which bwrap replaces with a private tmpfs) or under a masked home folder.
    candidates = list(runtime_paths() if runtime is None else runtime)
    if mode != "bwrap":
        candidates += run_folders
    if env.get("EVOFORGE_TASK_DIR"):
        candidates.append(Path(env["EVOFORGE_TASK_DIR"]).resolve())
    readonly = [p for p in dict.fromkeys(candidates) if p.is_dir() and p != Path("/") and p != writable
                and not p.is_relative_to(writable)]
    masked: list[Path] = []
    if mode == "bwrap":
        masked = [p for p in dict.fromkeys([*HOME_FOLDERS, Path.home().resolve(), *run_folders, *SECRET_PATHS])
                  if p.exists() and p != Path("/")]
    return Jail(mode, network, writable, tuple(sorted(readonly, key=lambda p: len(p.parts))), cwd.resolve(),
                masked=tuple(sorted(masked, key=lambda p: len(p.parts))),
                hidden=tuple(p.resolve() for p in hidden if p.exists()))


def wrapper_argv(jail: Jail, info_fd: int | None = None) -> list[str]:
    """The command prefix that starts a process inside the jail (empty for mode none); the command follows.

    Under bwrap, `info_fd` is a descriptor bwrap writes {"child-pid": N} to: the jail's PID 1 as seen from outside.
    """
    if jail.mode == "unshare":
        return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *([] if jail.network else ["--net"]),
                "--"]
    if jail.mode != "bwrap":
        return []
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--as-pid-1", "--cap-drop", "ALL",
            *[arg for cap in jail.caps for arg in ("--cap-add", cap)], *([] if jail.network else ["--unshare-net"]),
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    size = [] if jail.tmp_mb is None else ["--size", str(jail.tmp_mb * 1024 * 1024)]
    argv += [*size, "--tmpfs", "/tmp", *size, "--tmpfs", "/dev/shm"]
    for device in _devices():
        argv += ["--dev-bind-try", device, device]
    # Outer paths first, so that each deeper one wins: a virtualenv under the masked home folder stays visible,
    # and a run folder inside a visible checkout stays masked. At the same depth a bind wins over a mask.
    # A folder reached through a symlink (a virtualenv linked from elsewhere) is not bound onto itself: bwrap would
    # follow the link inside the new root and fail. Its real folder is bound; the link is made again where the jail
    # has a fresh tmpfs over it (elsewhere the read-only root already shows it).
    linked = [p for p in jail.readonly if os.path.realpath(p) != str(p)]
    bound = [p for p in jail.readonly if p not in linked]
    steps = sorted([(len(p.parts), 0, p) for p in jail.masked] + [(len(p.parts), 1, p) for p in bound])
    for _, bind, path in steps:
        argv += ["--ro-bind", str(path), str(path)] if bind else _masks([path])
    argv += _masks(jail.hidden)
    target = jail.staging or jail.writable
    argv += ["--bind", str(jail.writable), str(target), "--setenv", "TMPDIR", "/tmp"]
    argv += _links(linked, tmpfs=[Path("/tmp"), Path("/dev/shm"), *jail.masked, *jail.hidden],
                   binds=[Path("/"), *bound, target])
    for path in (*jail.masked, *jail.hidden):  # the masks' empty tmpfs read-only (the binds inside stay as they are)
        if path.is_dir():
            argv += ["--remount-ro", str(path)]
    if jail.cwd.exists():
        argv += ["--chdir", str(jail.cwd)]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return [*argv, "--"]


@functools.lru_cache(maxsize=1)
def _devices() -> tuple[str, ...]:
    """The GPU devices present (looked for once per process)."""
    return tuple(device for pattern in DEVICE_GLOBS for device in sorted(glob.glob(pattern)))


def _links(paths: Sequence[Path], tmpfs: Sequence[Path], binds: Sequence[Path]) -> list[str]:
    """bwrap arguments that make again, inside the jail, the first symlink on the way to each of `paths`, where
    the deepest mount over its folder is a tmpfs (else the bound host folder already holds the link)."""
    argv: list[str] = []
    made: set[Path] = set()
    for path in paths:
        link = next((p for p in (*reversed(path.parents), path) if p.is_symlink()), None)
        if link is None or link in made:
            continue
        made.add(link)
        over = [(len(m.parts), 0, m) for m in tmpfs if link.parent.is_relative_to(m)]
        over += [(len(m.parts), 1, m) for m in binds if link.parent.is_relative_to(m)]
        if over and max(over)[1] == 0:
            argv += ["--symlink", os.readlink(link), str(link)]
    return argv


def _masks(paths: Sequence[Path]) -> list[str]:
    """bwrap arguments that empty each path: an empty tmpfs over a folder, /dev/null over a file."""
    argv: list[str] = []
    for path in paths:
        if path.is_dir():
            argv += ["--tmpfs", str(path)]
        elif path.exists():
            argv += ["--ro-bind", "/dev/null", str(path)]
    return argv


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str | None, target: str, flags: int) -> None:
    src = source.encode() if source is not None else None
    if _libc().mount(src, target.encode(), None, flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def protect_mounts(writable: Path, readonly: Sequence[Path]) -> None:
    """Inside a private mount namespace: make `readonly` folders read-only, keeping `writable` writable.

    The trial folder is bound onto itself first, so each recursive read-only bind above it carries a writable copy;
    then the working folder is entered again through the new mounts.
    """
    _mount(str(writable), str(writable), MS_BIND)
    for folder in sorted(readonly, key=lambda p: len(p.parts)):
        _mount(str(folder), str(folder), MS_BIND | MS_REC)
        _mount(None, str(folder), MS_REMOUNT | MS_BIND | MS_RDONLY)
    os.chdir(os.getcwd())  # the old working folder still points into the writable mounts below the new ones


def drop_capabilities() -> None:
    """Empty the capability bounding set and set no_new_privs: after exec even root holds no capability."""
    libc = _libc()
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def reset_warnings() -> None:
    """Forget that the fallback warning was given (tests)."""
    _warned.clear()
