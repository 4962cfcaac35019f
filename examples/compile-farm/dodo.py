"""`doit` here builds what changed, like `cpb build`; `doit list --status` shows it."""
from cpb.dodo import *  # noqa: F403
