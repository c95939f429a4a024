"""imagepull-bot: explains Kubernetes image-pull failures and how to fix them."""

__version__ = "0.1.0"
