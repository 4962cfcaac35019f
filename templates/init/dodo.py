"""`doit` here builds every image that changed, like `cpb build`; it starts no pod.

`doit up` (or `cpb up`) starts the pods, `doit pod:NAME` one of them;
`doit list --status` shows every task. The tasks come from cpb.yaml.
"""
from cpb.dodo import *  # noqa: F403
