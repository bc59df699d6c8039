"""2D test functions for the optimizer race, and the race's results as plain data.

Torch-free and textual-free: the computation (:mod:`optitui.trainer.control.surface_race`)
and the screen (:mod:`optitui.tui.surface`) both read it.
"""
