"""Runs on other hosts, read through the user's own ssh: ``optitui serve-stdio`` on the
far side, a reconnecting client here. Imports neither torch nor textual."""
