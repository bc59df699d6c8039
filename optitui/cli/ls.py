"""``optitui ls``: the runs under a root, one line each."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from optitui.cli.common import age


def add_parser(sub: Any) -> None:
    ls = sub.add_parser("ls", help="list runs with state, step, last loss and age")
    ls.add_argument("--root", type=Path, default=Path("runs"))


def main(args: argparse.Namespace) -> int:
    from optitui.store.layout import find_runs
    from optitui.store.reader import open_reader

    runs = find_runs(args.root)
    if not runs:
        print(f"no runs under {args.root}/")
        return 0
    now = time.time()
    table = [("RUN", "STATE", "STEP", "LOSS", "AGE", "SCRIPT")]
    for paths in runs:
        try:
            with open_reader(paths.root) as r:
                st = r.status()
                loss = r.last_loss()
                script = Path(str(r.meta().get("script", "?"))).name
                table.append(
                    (
                        paths.root.name,
                        st.state,
                        str(st.step),
                        "-" if loss is None else f"{loss:.4g}",
                        age(now - (st.last_record or st.heartbeat)),
                        script,
                    )
                )
        except Exception as exc:
            table.append((paths.root.name, "unreadable", "-", "-", "-", str(exc)[:40]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
