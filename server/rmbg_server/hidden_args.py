"""Start a program with a secret in its arguments without showing the secret to other users.

Triton reads its admin key only from its command line, and every local user can read any
process's command line (``ps``, ``/proc/PID/cmdline``). Its environment, by contrast, is
readable by its owner and root only (``/proc/PID/environ`` is mode 0400). So the secret
travels in the environment, and the command line shows a placeholder in its place:

  1. the child asks to be traced (PTRACE_TRACEME) and execs the program, which stops the new
     program before its first instruction;
  2. we find, through ``/proc/PID/mem``, the argv pointer of each argument that holds the
     secret and point it at a copy of the real argument in the environment block;
  3. we detach; ``main`` reads the real arguments while ``/proc/PID/cmdline`` (which reads
     the original argument strings, not the pointers) keeps showing the placeholder.

Nothing else changes for the program. Linux on 64-bit only (x86-64, aarch64: the initial
stack layout argc, argv[], envp[] is the same); where ptrace is refused (a seccomp profile,
Yama ptrace_scope 2 or 3) the caller is told and may fall back to a visible argument.

Our own commands take secrets as flags too (``rmbg gateway --api-key KEY``). Python has copied its
arguments into ``sys.argv`` by the time they are parsed, so ``hide_own_arguments`` overwrites the
original strings, which ``/proc/PID/cmdline`` reads (between ``arg_start`` and ``arg_end`` of
``/proc/self/stat``), through ``/proc/self/mem``. They show until the flags are parsed, a fraction
of a second after the start: files and environment variables never show.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

PLACEHOLDER = "<hidden>"
_ENV_PREFIX = "RMBG_HIDDEN_ARG_"
_PTRACE_TRACEME = 0
_PTRACE_DETACH = 17


class HiddenArgsUnavailable(RuntimeError):
    """This system does not let us hide arguments (not Linux, 32-bit, or ptrace refused)."""


def _libc_ptrace():
    if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
        raise HiddenArgsUnavailable("hiding arguments needs 64-bit Linux")
    ptrace = ctypes.CDLL(None, use_errno=True).ptrace
    ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    ptrace.restype = ctypes.c_long
    return ptrace


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat fields after the command name; field n (1-based, man proc) is [n - 3]."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2:].split()


def _redirect(pid: int, argc: int, hidden: Mapping[int, bytes]) -> None:
    """Point argv[i] of the stopped ``pid`` at the environment entry that holds argument i."""
    fields = _stat_fields(pid)
    start_stack, env_start, env_end = int(fields[25]), int(fields[47]), int(fields[48])
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(start_stack)
        if struct.unpack("=Q", mem.read(8))[0] != argc:
            raise HiddenArgsUnavailable("unexpected initial stack layout")
        mem.seek(env_start)
        block = b"\0" + mem.read(env_end - env_start)
        for index, value in hidden.items():
            entry = f"{_ENV_PREFIX}{index}=".encode()
            at = block.find(b"\0" + entry + value + b"\0")
            if at < 0:
                raise HiddenArgsUnavailable("hidden argument not found in the environment")
            mem.seek(start_stack + 8 * (1 + index))
            mem.write(struct.pack("=Q", env_start + at + len(entry)))


def popen_hiding(cmd: Sequence[str], secret: str, env: Mapping[str, str] | None = None,
                 **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` with every occurrence of ``secret`` in ``cmd`` shown as PLACEHOLDER.

    The program still receives the real arguments. Raises HiddenArgsUnavailable (before
    anything is started, or after killing the half-started child) where this cannot be done.
    """
    hidden = {i: arg.encode() for i, arg in enumerate(cmd) if secret and secret in arg}
    if not hidden:
        return subprocess.Popen(list(cmd), env=env, **popen_kwargs)
    ptrace = _libc_ptrace()
    visible = [arg.replace(secret, PLACEHOLDER) if i in hidden else arg for i, arg in enumerate(cmd)]
    child_env = dict(os.environ if env is None else env)
    child_env.update({f"{_ENV_PREFIX}{i}": arg.decode() for i, arg in hidden.items()})

    def trace_me() -> None:  # runs in the child between fork and exec
        if ptrace(_PTRACE_TRACEME, 0, None, None) != 0:
            raise OSError(ctypes.get_errno(), "PTRACE_TRACEME refused")

    try:
        process = subprocess.Popen(visible, env=child_env, preexec_fn=trace_me, **popen_kwargs)
    except subprocess.SubprocessError as exc:
        raise HiddenArgsUnavailable(f"ptrace refused: {exc}") from None
    try:
        _, status = os.waitpid(process.pid, 0)  # the stop at exec, before the program runs
        if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP):
            raise HiddenArgsUnavailable(f"the child did not stop at exec (status {status:#x})")
        _redirect(process.pid, len(cmd), hidden)
        if ptrace(_PTRACE_DETACH, process.pid, None, None) != 0:
            raise HiddenArgsUnavailable(f"PTRACE_DETACH failed (errno {ctypes.get_errno()})")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def masked_arguments(block: bytes, secrets: Iterable[bytes]) -> bytes:
    """The NUL-separated argument block with each argument that is a secret (``KEY``) or ends in one
    (``--flag=KEY``) shown as PLACEHOLDER; never longer than ``block`` (padded with NULs).

    A secret shorter than the placeholder is shown as asterisks of its length when the placeholder
    does not fit: the block cannot grow.
    """
    wanted = {s for s in secrets if s}

    def mask(arg: bytes, shown: bytes | None) -> bytes:
        if arg in wanted:
            return shown if shown is not None else b"*" * len(arg)
        flag, eq, value = arg.partition(b"=")
        if eq and value in wanted:
            return flag + eq + (shown if shown is not None else b"*" * len(value))
        return arg

    for shown in (PLACEHOLDER.encode(), None):
        out = b"\0".join(mask(arg, shown) for arg in block.split(b"\0"))
        if len(out) <= len(block):
            return out + b"\0" * (len(block) - len(out))
    raise AssertionError("unreachable: asterisks keep the length")


def hide_own_arguments(secrets: Iterable[str | None]) -> bool:
    """Show every command-line argument of this process that is one of ``secrets`` as PLACEHOLDER to
    other users (``ps``, ``/proc/PID/cmdline``); ``sys.argv`` is unchanged. Where this cannot be done
    it logs a warning that says so and returns False.
    """
    wanted = [os.fsencode(s) for s in secrets if s]  # as the kernel holds arguments
    if not wanted:
        return True
    try:
        if not sys.platform.startswith("linux"):
            raise HiddenArgsUnavailable("hiding arguments needs Linux")
        fields = _stat_fields(os.getpid())
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (man proc: fields 48 and 49)
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            block = mem.read(end - start)
            masked = masked_arguments(block, wanted)
            if masked != block:
                mem.seek(start)
                mem.write(masked)
    except (OSError, ValueError, IndexError, HiddenArgsUnavailable) as exc:
        log.warning("cannot hide secret flags from other local users' process lists (%s); pass them in a file "
                    "or an environment variable instead", exc)
        return False
    return True


def url_has_password(url: str | None) -> bool:
    """Whether a URL such as ``--redis redis://:PASSWORD@host:6379/0`` carries a secret."""
    try:
        return bool(url) and urlsplit(url).password is not None
    except ValueError:
        return False


def redacted_url(url: str) -> str:
    """``url`` fit for a log line or the console: its password shown as ``***``."""
    if not url_has_password(url):
        return url
    parts = urlsplit(url)
    login = f"{parts.username or ''}:***@"
    return urlunsplit(parts._replace(netloc=login + parts.netloc.rpartition("@")[2]))


def hide_secret_flags(args: object) -> bool:
    """``hide_own_arguments`` for the flags of ``rmbg gateway`` and ``rmbg up`` that carry secrets:
    --api-key, --webhook-secret and a --redis URL with a password."""
    redis = getattr(args, "redis", None)
    return hide_own_arguments([*(getattr(args, "api_key", None) or []), getattr(args, "webhook_secret", None),
                               redis if url_has_password(redis) else None])
