"""What changes a running job at a step boundary: commands, ramps, guard, saves, tests."""
