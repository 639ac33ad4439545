"""The sandbox of a warm job's process: Linux Landlock, applied by the process to itself.

A cold job's sandbox is bubblewrap around spark-submit (:mod:`sparkrunner.sandbox`). A warm job
is forked from a fork server that has Spark Connect's client already imported
(:mod:`sparkrunner.inside.forkserver`); starting bwrap and a fresh Python for it would cost the
half second the fork saves. So the forked process, before it runs any of the job's code,

- gives up every capability and the right to gain one (``no_new_privs``), as bwrap does;
- restricts itself with Landlock: it may read (and execute) what a cold job's sandbox shows
  read-only (the system, the Python, Java and Spark installations) and read and write its own
  working directory and the configured local roots; nothing else of the file system, so neither
  the data directory, nor another job's directory, nor the configuration;
- may not signal, nor trace (so nor read the memory, environment or files through ``/proc``
  of) any process outside its own domain: the service, the fork server, other jobs.

What Landlock cannot do, and bwrap does for cold jobs: hide a path inside one it shows (it can
only allow), and give the job its own PID namespace (it sees the host's process list, not
their secrets). :func:`unavailable` says why Landlock cannot run here; then warm jobs run cold.

Standard library only (ctypes): it runs in the fork server.
"""

import ctypes
import os

# Syscall numbers: the same on every architecture (allocated after the tables were unified).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522

# Access rights to files (ABI 1, then the ABI that added each).
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_ABI1_ALL = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
#: The rights that apply to a file itself (a rule on a file may hold only these).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
#: Scopes (ABI 6): signals to processes outside the domain.
SCOPE_SIGNAL = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
#: Signals scoped need ABI 6 (Linux 6.12).
MINIMUM_ABI = 6

READ = EXECUTE | READ_FILE | READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result, what):
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "%s: %s" % (what, os.strerror(errno)))
    return result


def abi():
    """The Landlock ABI version of this kernel; 0 when it has none (or it is disabled)."""
    result = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(result), 0)


def unavailable():
    """Why a warm job cannot be sandboxed here; None when it can."""
    version = abi()
    if version == 0:
        return "the kernel has no Landlock (or it is disabled), which sandboxes warm jobs"
    if version < MINIMUM_ABI:
        return ("the kernel's Landlock (ABI %d) cannot confine signals; warm jobs need ABI %d "
                "(Linux 6.12)" % (version, MINIMUM_ABI))
    return None


def _handled(version):
    rights = _ABI1_ALL
    if version >= 2:
        rights |= REFER
    if version >= 3:
        rights |= TRUNCATE
    if version >= 5:
        rights |= IOCTL_DEV
    return rights


def drop_privileges():
    """No capability left (even as root), none to gain: as bwrap's ``--cap-drop ALL``."""
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the last capability
                break
            # EPERM: not ours to drop (no CAP_SETPCAP): then we hold none to lose either.
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def restrict(read_only, read_write):
    """Confines this process (and what it starts) to reading ``read_only`` and reading and
    writing ``read_write`` (paths; those missing are skipped), and to signalling only its own
    domain. Call :func:`drop_privileges` first (Landlock needs ``no_new_privs``)."""
    version = abi()
    if version < MINIMUM_ABI:
        raise OSError(unavailable())
    handled = _handled(version)
    attr = _RulesetAttr(handled, 0, SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET)
    ruleset = _check(_libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                                   ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        for paths, rights in ((read_only, READ & handled), (read_write, handled)):
            for path in paths:
                _allow(ruleset, path, rights)
        _check(_libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _allow(ruleset, path, rights):
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        beneath = _PathBeneathAttr(rights, fd)
        _check(_libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                             ctypes.byref(beneath), ctypes.c_uint32(0)), "landlock_add_rule %r" % path)
    finally:
        os.close(fd)
