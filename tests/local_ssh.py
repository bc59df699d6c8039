"""A stand-in for ssh that runs the remote command on this host (``OPTITUI_SSH``).

It takes ssh's command line as optitui builds it (options, ``--``, host, command)
and runs the command with ``sh -c``, as sshd would, so the client and the
server talk through real pipes and processes without an sshd. Tests of the
protocol use it; tests of ssh itself use a real sshd (tests/sshd.py).
"""

from __future__ import annotations

import os
import sys
import time

# a test holds reconnects back while this file exists, so a lost link stays lost
# until it has looked at the screen (a quick reconnect would hide the drop)
gate = os.environ.get("OPTITUI_TEST_SSH_GATE")
while gate and os.path.exists(gate):
    time.sleep(0.02)

argv = sys.argv[1:]
command = argv[argv.index("--") + 2 :]
os.execvp("sh", ["sh", "-c", "exec " + " ".join(command)])  # one process, as killable as ssh
