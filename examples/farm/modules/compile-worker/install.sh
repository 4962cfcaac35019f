#!/bin/sh
set -e
here=$(dirname "$0")
install -m 0755 "$here/compile-one" /usr/local/bin/compile-one
install -d /usr/local/share/compile-worker /work
install -m 0644 "$here/hello.c" /usr/local/share/compile-worker/hello.c
