#!/bin/sh
# nats-server for the ComputePods back-plane: JetStream's store on the image's
# volume (not the container's /tmp). No configuration in the image: cpb mounts
# the pod's own at run time in /etc/computepods/tls (nats.conf with mutual TLS,
# the server's certificate and key, the CA; docs/security.md), so the image
# holds no key and cannot run NATS without TLS.
set -eu
mkdir -p /etc/computepods/tls /data/jetstream
# the image may run as any user (`user:` in cpb.yaml): like /tmp, anyone may write
chmod 1777 /data/jetstream
/usr/sbin/nats-server --version
