"""``optitui serve-stdio``: the far end of ``attach``, ``ls`` and ``send`` with HOST:RUN.

Started by the client through the user's ssh, never by hand: it speaks the
line protocol of :mod:`optitui.remote.protocol` on stdin and stdout, reads the
run store like any viewer, and listens on no port.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve-stdio",
        help="serve a run over stdin/stdout (what attach HOST:RUN runs there through ssh)",
        description="Speaks optitui's line protocol on stdin and stdout for a client at the "
        "other end of ssh. Started by `optitui attach|ls|send HOST:...`; only this user's "
        "own runs are served. Imports no torch and opens no port.",
    )
    serve.add_argument("run", nargs="?", help="run directory (or its name under --root)")
    serve.add_argument("--root", default="runs", help="where runs are (./runs)")


def main(args: argparse.Namespace) -> int:
    from optitui.remote.server import Server

    # a client that goes away closes the pipe: end quietly instead of a traceback
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    server = Server(sys.stdin.buffer, sys.stdout.buffer, default_run=args.run, root=args.root)
    return server.serve()
