from cpb.noop import entry

entry()
