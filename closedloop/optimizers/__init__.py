"""Ask/tell optimizers over a space's latent vectors (one module per kind)."""

from closedloop.optimizers.base import Optimizer

__all__ = ["Optimizer"]
