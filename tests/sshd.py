"""A private sshd on 127.0.0.1 for the remote tests and the remote benchmark.

A throwaway host key and user key, a config of its own on a free port, no PAM,
no passwords: the server logs this user in with the key, and the client side is
an ``ssh -F CONFIG`` whose config names the host ``optitui-test``, as a user's
``~/.ssh/config`` would. :func:`start` returns why it cannot run (no sshd
binary, no privilege-separation directory, ...) instead of failing.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "optitui-test"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Sshd:
    port: int
    client_config: Path
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """What makes optitui reach this sshd, and run this checkout's optitui there."""
        remote = f"env PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} -m optitui"
        return {"OPTITUI_SSH": f"ssh -F {self.client_config}", "OPTITUI_REMOTE": remote}

    def ssh(self, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(self.client_config), HOST, *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start(tmp: Path) -> Sshd | str:
    """A running sshd and its client config, or the reason there cannot be one."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "openssh-server or openssh-client is missing (apt-get install openssh-server)"
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        try:  # sshd running as root wants its privilege-separation directory
            Path("/run/sshd").mkdir(mode=0o755, parents=True)
        except OSError as exc:
            return f"sshd needs /run/sshd and it cannot be made: {exc}"
    tmp.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o700)
    _keygen(tmp / "host_key")
    _keygen(tmp / "user_key")
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    os.chmod(tmp / "authorized_keys", 0o600)
    port = _free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {tmp / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\n"
        f"PidFile {tmp / 'sshd.pid'}\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "LogLevel ERROR\n"
    )
    client = tmp / "ssh_config"
    client.write_text(
        f"Host {HOST}\n"
        "  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User {getpass.getuser()}\n"
        f"  IdentityFile {tmp / 'user_key'}\n"
        "  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n"
    )
    proc = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(tmp / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Sshd(port, client, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            return f"sshd did not start: {said or f'exit status {proc.returncode}'}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    else:
        server.stop()
        return "sshd did not listen within 10 s"
    check = server.ssh("true")
    if check.returncode != 0:
        server.stop()
        return f"cannot log in to the test sshd: {check.stderr.strip()[-300:]}"
    return server
