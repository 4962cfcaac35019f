"""What each task does and when it is up to date; the plan; doit."""
