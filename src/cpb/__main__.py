from cpb.cli.fastpath import entry

entry()
