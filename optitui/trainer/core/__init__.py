"""What every part stands on: the Job, lr control, devices, snapshots, checkpoints."""
