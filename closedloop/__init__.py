"""closedloop: closed-loop single-unit experiments on simulated neurons.

From Python (docs/python.md):

    import closedloop
    run = closedloop.run("protocols/quickstart.yaml", generations=10)
    run.trials            # one row per presentation (pandas)
    run = closedloop.evolve(model, "features.2:5", input_shape=(3, 64, 64), budget=3000)

The names below are imported on first use, so `import closedloop` stays light.
"""

__version__ = "0.1.0"
__all__ = ["run", "experiment", "evolve", "neuron", "space", "optimizer", "open_run"]


def __getattr__(name):
    if name in __all__:
        from closedloop import api

        return getattr(api, name)
    raise AttributeError(f"module 'closedloop' has no attribute {name!r}")
