"""From the spec to concrete things: input digests, descriptors, manifests."""
