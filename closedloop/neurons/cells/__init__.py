"""Cell models of the spiking neuron as Brian2 equations (one module per kind, `@register("cell", name)`)."""
