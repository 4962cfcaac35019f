#!/bin/sh
# nats-server's configuration: the ComputePods back-plane on 4222, JetStream
# on, its store on the image's volume (not the container's /tmp).
set -eu
mkdir -p /etc/computepods /data/jetstream
# the image may run as any user (`user:` in cpb.yaml): like /tmp, anyone may write
chmod 1777 /data/jetstream
install -m 0644 /tmp/scripts/computepods-nats/nats.conf /etc/computepods/nats.conf
/usr/sbin/nats-server -c /etc/computepods/nats.conf -t
