"""The Trainer: fetch a batch, step, record, take commands at the boundary."""
