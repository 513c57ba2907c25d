"""Neurons: black boxes that turn a batch of stimuli into responses (one module per kind)."""

from closedloop.neurons.base import Neuron, Trials

__all__ = ["Neuron", "Trials"]
