"""Starting a job: headless runs, scripts with or without setup(), signals."""
