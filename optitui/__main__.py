"""``python -m optitui``: the same CLI as the ``optitui`` command."""

from optitui.cli import main

raise SystemExit(main())
