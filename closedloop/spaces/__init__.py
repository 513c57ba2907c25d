"""Stimulus spaces: latent vectors z (n, dim) rendered to stimuli (one module per kind)."""

from closedloop.spaces.base import StimulusSpace

__all__ = ["StimulusSpace"]
