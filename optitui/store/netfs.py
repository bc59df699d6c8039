"""Is a directory on a network filesystem? (Then SQLite must not be shared through it.)

SQLite's WAL keeps its index in shared memory (a ``-shm`` file mapped by every
connection), so all processes using a WAL database must be on one host; its
locks rely on POSIX advisory locks, which network filesystems implement
unreliably or not at all (Lustre mounted without ``flock``, NFS without
``lockd``). The type comes from ``statfs(2)``'s ``f_type``; FUSE mounts are
told apart by their type in ``/proc/self/mountinfo`` (``fuse.sshfs``, ...).

``OPTITUI_NETWORK_FS`` overrides the detection: ``yes`` (or a name) treats
every run directory as shared, ``no`` as local.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

#: statfs f_type of filesystems that other hosts share (linux/magic.h and vendors')
NETWORK_TYPES = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFE534D42: "smb2",
    0xFF534D42: "cifs",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x19830326: "beegfs",
    0x00C36400: "ceph",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x73757245: "coda",
    0x01021997: "9p",
    0x20030528: "orangefs",
    0x7461636F: "ocfs2",
    0x01161970: "gfs2",
    0xAAD7AAEA: "panfs",
    0x564C: "ncp",
}
FUSE = 0x65735546
#: FUSE filesystems whose files live on other machines
NETWORK_FUSE = (
    "sshfs",
    "glusterfs",
    "s3fs",
    "rclone",
    "gcsfuse",
    "juicefs",
    "beegfs",
    "ceph",
    "cephfs",
    "lizardfs",
    "moosefs",
    "mfs",
    "davfs",
    "curlftpfs",
    "goofys",
    "blobfuse",
    "blobfuse2",
    "seaweedfs",
    "weka",
)


def statfs_type(path: Path | str) -> int | None:
    """``f_type`` of the filesystem holding ``path`` (Linux), or None when unknown."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct statfs: 120 bytes on 64-bit Linux
        if libc.statfs(os.fsencode(str(path)), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    # f_type is the first field (a long, or an int on 32-bit): its low 32 bits are the magic
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def mount_type(path: Path | str, mountinfo: str | None = None) -> str | None:
    """The type ``/proc/self/mountinfo`` gives the mount holding ``path`` (``fuse.sshfs``)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, found = -1, None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, found = len(point), right.split()[0]
    return found


def network_filesystem(path: Path | str) -> str | None:
    """The name of the network filesystem holding ``path``, or None when it is local
    (or cannot be told)."""
    forced = os.environ.get("OPTITUI_NETWORK_FS", "").strip().lower()
    if forced in ("no", "0", "false", "local"):
        return None
    if forced:
        return "network (OPTITUI_NETWORK_FS)" if forced in ("yes", "1", "true") else forced
    kind = statfs_type(path)
    if kind in NETWORK_TYPES:
        return NETWORK_TYPES[kind]
    if kind == FUSE:
        name = mount_type(path) or ""
        sub = name.split(".", 1)[1] if name.startswith("fuse.") else name
        if sub in NETWORK_FUSE:
            return name
    return None
