"""The outside world: processes, podman, cekit, root file systems, registries, downloads."""
