"""The neuron boundary as a socket: wire format, server, rig simulator, keys (docs/rig.md)."""
