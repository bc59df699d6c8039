"""Plain-text views of a run, for logs and terminals without the dashboard.

Headless progress lines and the live status line (:mod:`progress`), the
``optitui status`` summary (:mod:`summary`), the smoothed pace and ETA
(:mod:`pace`). Everything here reads the run store; nothing imports torch or
textual, so the job process and the viewer can both use it.
"""
