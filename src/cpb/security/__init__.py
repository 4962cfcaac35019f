"""The pod back-plane's security: a CA per project (pki) and nats-server's
TLS and per-role permissions rendered from the pod spec (natsconf)."""
