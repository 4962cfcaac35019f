from cpb.cli import entry

entry()
