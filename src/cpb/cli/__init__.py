"""The command line: the fast path, the click app, pod commands, doctor."""
