"""The no-op record `.cpb/noop.json`: written by a run that found nothing to do
(`write`), read by the fast path before anything else is imported (`record`)."""
