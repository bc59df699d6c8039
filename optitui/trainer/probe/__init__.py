"""Loops the trainer does not own: optitui.watch, zero-code mode, frameworks' loops."""
