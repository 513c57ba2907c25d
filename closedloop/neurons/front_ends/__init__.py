"""Front ends of the spiking neuron: stimulus -> drive (one module per kind, `@register("front_end", name)`)."""
