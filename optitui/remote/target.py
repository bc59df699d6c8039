"""Where a remote run is: ``HOST:RUN``, ``user@HOST:RUN`` or ``ssh://[user@]host[:port]/path``,
and the ``ssh`` command line that reaches it.

ssh is the user's own (``OPTITUI_SSH``, default ``ssh``): their keys, agent,
``~/.ssh/config`` aliases and jump hosts all apply. On the far side the
command is ``OPTITUI_REMOTE`` (default ``optitui``; e.g. ``~/venv/bin/optitui``
or ``python3 -m optitui``), run by the remote user's shell.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: a host as ssh takes it: a name, an alias, an address; never an option
_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%\w+)?)$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class TargetError(ValueError):
    """A remote run name that cannot be used; the message says why."""


@dataclass(frozen=True)
class Target:
    """A path on a host reached with ssh (``path`` empty: the remote default)."""

    host: str
    path: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        """How the run is named back to the user: ``HOST:PATH``."""
        who = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{who}{host}:{self.path}"

    def ssh_argv(self, remote: list[str], *, batch: bool) -> list[str]:
        """The ssh command running ``optitui`` + ``remote`` (arguments, quoted here) there.

        ``batch`` forbids prompts (reconnects happen while the dashboard owns the
        terminal); the first connection may ask for a passphrase or a host key."""
        ssh = shlex.split(os.environ.get("OPTITUI_SSH", "ssh")) or ["ssh"]
        program = os.environ.get("OPTITUI_REMOTE", "optitui").strip() or "optitui"
        argv = [*ssh, "-T", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3"]
        if batch:
            argv += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.user is not None:
            argv += ["-l", self.user]
        # the program is the user's own shell text (it may need ~ or a venv's path);
        # every argument of ours is quoted
        return [*argv, "--", self.host, f"{program} {shlex.join(remote)}"]


def _check_host(host: str) -> str:
    if not _HOST.match(host):
        raise TargetError(f"{host!r} is not a host name ssh can be given")
    return host


def _check_user(user: str | None) -> str | None:
    if user is not None and not _USER.match(user):
        raise TargetError(f"{user!r} is not a user name ssh can be given")
    return user


def parse(text: str) -> Target | None:
    """The remote run ``text`` names, or None for a path on this host.

    Like scp: a colon before any slash makes it remote (``gpu1:runs/big``,
    ``gpu1:`` for the remote default). An existing local path is always local.
    """
    if text.startswith("ssh://"):
        return _parse_url(text)
    if Path(text).exists():
        return None
    user, at, rest = text.partition("@") if "@" in text.split(":", 1)[0] else ("", "", text)
    if rest.startswith("["):  # [::1]:path
        end = rest.find("]:")
        if end < 0:
            return None
        host, path = rest[1:end], rest[end + 2 :]
    else:
        host, colon, path = rest.partition(":")
        if not colon or not host or "/" in host:
            return None
    return Target(_check_host(host), path, _check_user(user if at else None))


def _parse_url(text: str) -> Target:
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise TargetError(f"{text}: an ssh:// address takes no ?query or #fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"{text}: {exc}") from None
    host = parts.hostname
    if not host:
        raise TargetError(f"{text}: no host")
    path = unquote(parts.path)
    if path.startswith("/~"):  # ssh://host/~/runs: relative to the remote home, as in git
        path = path[1:]
    user = _check_user(unquote(parts.username) if parts.username else None)
    return Target(_check_host(host), path, user, port)
