"""A seccomp-BPF filter that shuts the kernel doors a sandboxed process must never open, built by hand.

No libseccomp, no new dependency: a classic BPF program (a list of `struct sock_filter`) that
- checks `seccomp_data.arch` (x86_64 and aarch64; any other ABI, i386 `int 0x80` included, is killed),
- denies x32 system calls on x86_64 (numbers with bit 30 set),
- answers EPERM to the calls below (namespaces, mounts, tracing another process, kernel modules,
  keyrings, BPF, perf, userfaultfd, io_uring, swap, reboot, ...),
- answers EPERM to `clone` with any namespace flag (a user namespace needs no privilege, so this is what
  keeps a new one out), and ENOSYS to `clone3`, whose flags live in memory a filter cannot read; glibc
  then falls back to `clone`, which is filtered by its flags,
- refuses sockets of any family but Unix, IPv4, IPv6 and netlink (AF_VSOCK is not namespaced: it reaches
  the hypervisor), and the terminal-injection ioctls TIOCSTI and TIOCLINUX.

`filter_bytes()` is the packed program (for `bwrap --seccomp FD`); `install()` loads it in this process.

System call numbers: x86_64 from the kernel's `arch/x86/entry/syscalls/syscall_64.tbl`, aarch64 from
`include/uapi/asm-generic/unistd.h` (checked against linux-libc-dev 6.1's `asm/unistd_64.h` and
`asm-generic/unistd.h`, and in tests/test_attacks_escape.py against libseccomp's tables; numbers from
424 on are shared by every architecture).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

# offsets in struct seccomp_data (little endian on both architectures)
_NR, _ARCH = 0, 4
_ARG = [16 + 8 * i for i in range(6)]  # the low 32 bits of args[i]

NAMESPACE_FLAGS = 0x7E020000
"""CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
CLONE_NEWNET (CLONE_NEWTIME lies in clone's exit-signal byte and only works through unshare/clone3)."""
ALLOWED_SOCKET_FAMILIES = (1, 2, 10, 16)
"""AF_UNIX, AF_INET, AF_INET6, AF_NETLINK."""
DENIED_IOCTLS = (0x5412, 0x541C)
"""TIOCSTI (push input into a terminal) and TIOCLINUX."""

DENIED: dict[str, tuple[int | None, int | None]] = {
    # name: (x86_64, aarch64); None where the architecture has no such call
    "setns": (308, 268),
    "unshare": (272, 97),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "process_madvise": (440, 440),
    "pidfd_getfd": (438, 438),
    "kcmp": (312, 272),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "userfaultfd": (323, 282),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "open_by_handle_at": (304, 265),
    "name_to_handle_at": (303, 264),
    "open_tree": (428, 428),
    "open_tree_attr": (467, 467),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "statmount": (457, 457),
    "listmount": (458, 458),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "reboot": (169, 142),
    "acct": (163, 89),
    "syslog": (103, 116),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "lookup_dcookie": (212, 18),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "modify_ldt": (154, None),
    "iopl": (172, None),
    "ioperm": (173, None),
    "uselib": (134, None),
}
"""Every call here answers EPERM."""
SPECIAL: dict[str, tuple[int, int]] = {
    "clone": (56, 220),
    "clone3": (435, 435),
    "socket": (41, 198),
    "socketpair": (53, 199),
    "ioctl": (16, 29),
}
SECCOMP_SYSCALL = {"x86_64": 317, "aarch64": 277}


def deny_list() -> list[str]:
    """The calls refused outright (clone with namespace flags, clone3, odd socket families and two
    ioctls are refused by their arguments, on top of these)."""
    return sorted(DENIED)


class _Program:
    """Instructions with symbolic jump targets, resolved to classic BPF's relative 8-bit offsets."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def load(self, offset: int) -> None:
        self.code.append((_LD_W_ABS, 0, 0, offset))

    def jump(self, op: int, k: int, true: int | str, false: int | str = 0) -> None:
        self.code.append((op, true, false, k))

    def ret(self, value: int) -> None:
        self.code.append((_RET_K, 0, 0, value))

    def pack(self) -> bytes:
        out = []
        for i, (op, jt, jf, k) in enumerate(self.code):
            offsets = [self.labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf)]
            if not all(0 <= o < 256 for o in offsets):
                raise AssertionError(f"BPF jump out of range at instruction {i}: {offsets}")
            out.append(struct.pack("<HBBI", op, offsets[0], offsets[1], k))
        return b"".join(out)


def _arch_body(prog: _Program, arch: str, index: int) -> None:
    p = f"{arch}_"
    for nrs in DENIED.values():
        if (nr := nrs[index]) is not None:
            prog.jump(_JEQ_K, nr, "eperm")
    clone, clone3, sock, sockpair, ioctl = (SPECIAL[n][index] for n in SPECIAL)
    prog.jump(_JEQ_K, clone, p + "clone")
    prog.jump(_JEQ_K, clone3, "enosys")
    prog.jump(_JEQ_K, sock, p + "socket")
    prog.jump(_JEQ_K, sockpair, p + "socket")
    prog.jump(_JEQ_K, ioctl, p + "ioctl")
    prog.ret(SECCOMP_RET_ALLOW)
    prog.label(p + "clone")
    prog.load(_ARG[0])
    prog.jump(_JSET_K, NAMESPACE_FLAGS, "eperm")
    prog.ret(SECCOMP_RET_ALLOW)
    prog.label(p + "socket")
    prog.load(_ARG[0])
    for family in ALLOWED_SOCKET_FAMILIES:
        prog.jump(_JEQ_K, family, "allow")
    prog.ret(SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT)
    prog.label(p + "ioctl")
    prog.load(_ARG[1])
    for request in DENIED_IOCTLS:
        prog.jump(_JEQ_K, request, "eperm")
    prog.ret(SECCOMP_RET_ALLOW)


@functools.cache
def filter_bytes() -> bytes:
    """The packed program: an array of `struct sock_filter` (8 bytes each), as `bwrap --seccomp` reads."""
    prog = _Program()
    prog.load(_ARCH)
    prog.jump(_JEQ_K, AUDIT_ARCH_X86_64, "x86_64")
    prog.jump(_JEQ_K, AUDIT_ARCH_AARCH64, "aarch64")
    prog.ret(SECCOMP_RET_KILL_PROCESS)
    prog.label("x86_64")
    prog.load(_NR)
    prog.jump(_JGE_K, X32_SYSCALL_BIT, "eperm")
    _arch_body(prog, "x86_64", 0)
    prog.label("aarch64")
    prog.load(_NR)
    _arch_body(prog, "aarch64", 1)
    prog.label("eperm")
    prog.ret(SECCOMP_RET_ERRNO | errno.EPERM)
    prog.label("enosys")
    prog.ret(SECCOMP_RET_ERRNO | errno.ENOSYS)
    prog.label("allow")
    prog.ret(SECCOMP_RET_ALLOW)
    return prog.pack()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


# Resolved at import, in the trusted parent: a forked child should not dlopen.
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 38, 22
SECCOMP_MODE_FILTER, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC = 2, 1, 1


def install() -> None:
    """no_new_privs, then load the filter into this process: every thread of it (TSYNC) when the kernel has
    seccomp(2), else the calling thread (prctl). Irreversible. Raises OSError when the kernel refuses."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    data = filter_bytes()
    buf = ctypes.create_string_buffer(data, len(data))
    prog = _SockFprog(len(data) // 8, ctypes.addressof(buf))
    nr = SECCOMP_SYSCALL.get(os.uname().machine)
    if nr is not None:
        ok = _libc.syscall(nr, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)) == 0
        if ok:
            return
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): {os.strerror(err)}")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
