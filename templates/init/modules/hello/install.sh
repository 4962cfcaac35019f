#!/bin/sh
# Runs at build time, as root, inside the image being built.
set -e
echo "built by cpb on $(uname -m)" > /etc/hello
