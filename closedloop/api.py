"""closedloop from Python: run protocols, build the roles as objects, evolve a unit of a model in memory.

    import closedloop
    run = closedloop.run("protocols/quickstart.yaml", generations=10)    # -> Run (the log, read)
    run = closedloop.evolve(my_model, "features.2:5", input_shape=(3, 64, 64), budget=3000)

Everything here goes through a protocol (a path, YAML text or a dict), so every run is logged
with the protocol that made it and can be resumed or re-run from its log. Scores are maximised:
`optimizer.tell(z, scores)` takes responses, not losses (pycma and nevergrad minimise).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from closedloop.errors import ProtocolError

__all__ = ["run", "experiment", "evolve", "neuron", "space", "optimizer", "open_run"]


def plain(value):
    """numpy and torch numbers and arrays as the Python numbers and lists a protocol is written in."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "tolist") and type(value).__module__.split(".")[0] in ("numpy", "torch"):
        return value.tolist()
    return value


def _protocol(protocol, overrides: dict):
    from closedloop import protocol as protocol_module

    dotted = {key.replace("__", "."): plain(value) for key, value in overrides.items()}
    if isinstance(protocol, dict):
        data = plain(copy.deepcopy(protocol))  # the caller's dict stays as it was
        for key, value in dotted.items():
            protocol_module.set_path(data, key, value)
        return protocol_module.from_dict(data, "<python>")
    if isinstance(protocol, Path) or isinstance(protocol, str) and "\n" not in protocol and \
            Path(protocol).suffix in (".yaml", ".yml"):
        return protocol_module.load(str(protocol), dotted)
    if not isinstance(protocol, str):
        raise ProtocolError(f"expected a protocol (a .yaml file's path, YAML text or a dict), got a "
                            f"{type(protocol).__name__}")
    if "\n" not in protocol and ":" not in protocol:  # one line and no field: meant as a file's path
        hint = f"; did you mean {protocol}.yaml?" if Path(protocol + ".yaml").is_file() else ""
        raise ProtocolError(f"{protocol}: not a protocol file (a protocol file's name ends in .yaml){hint}")
    return protocol_module.parse(protocol, "<python>", dotted)


def experiment(protocol, **overrides):
    """The experiment a protocol describes (a path, YAML text or a dict), built and checked but
    not run. Keyword arguments override fields; `neuron__cell__noise_sigma=0.1` sets a nested one."""
    p = _protocol(protocol, overrides)
    return p.experiment_cls(p)


def run(protocol, out: str | Path | None = None, progress: bool = True, overwrite: bool = False, **overrides):
    """Run a protocol (a path, YAML text, a dict, or an experiment from `experiment`) and return
    its log as a `Run`, analysed: `run.numbers` holds what the report shows. Without `out`, the
    log goes to data/<name>.h5, never overwriting an earlier one; an existing `out` is refused
    unless `overwrite=True`."""
    from closedloop.commands.run import unique_output
    from closedloop.experiments.base import Experiment

    if isinstance(protocol, Experiment) and overrides:
        raise ProtocolError(f"run: overrides ({', '.join(overrides)}) apply to a protocol, not to a built experiment: "
                            f"give them to experiment(...)")
    if out is not None and not isinstance(out, (str, Path)) or out == "":
        raise ProtocolError(f"run: out: expected a file path, got {out!r}")
    built = protocol if isinstance(protocol, Experiment) else experiment(protocol, **overrides)
    if built.writes_directory:
        raise ProtocolError(f"{built.protocol.source}: a sweep writes a folder of logs: use experiment(...).run(folder)")
    path = Path(out) if out is not None else unique_output(built.default_output())
    from closedloop.analysis import check_report_places

    check_report_places(path)
    built.run(path, progress=progress, overwrite=overwrite)
    return open_run(path, analyse=True)


def open_run(path, analyse: bool = False):
    """The run log at `path` as a `Run` (tables of trials and generations, stimuli, configuration).
    With `analyse`, its figures and report are written and `run.numbers` holds the key numbers."""
    from closedloop.recording import open_run as open_log

    numbers = None
    if analyse:  # the analysis opens the log itself (and may clear a killed writer's marks in it)
        from closedloop.analysis import analyze

        open_log(path).close()  # what is not a log is refused in one line before anything is written
        numbers = analyze(path)
    log = open_log(path)
    log.numbers = numbers
    return log


def _component(role: str, kind: str, seed: int, fields: dict, **context):
    from closedloop import protocol as protocol_module, registry

    try:
        cls = registry.lookup(role, kind)
    except KeyError as exc:
        raise ProtocolError(f"{role}: {exc.args[0]}") from None
    if not isinstance(plain(seed), int) or isinstance(seed, bool) or plain(seed) < 0:
        raise ProtocolError(f"{role}: seed: a whole number of at least 0, got {seed!r}")
    config = protocol_module.validate(f"<python {role}>", role, cls.Config, fields)
    try:
        return cls(config, seed, **context)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"{role}: {exc}") from None


def neuron(kind: str, seed: int = 0, **fields):
    """A neuron to query by hand: `closedloop.neuron("spiking", size=16).present(stimuli, repeats=4)`."""
    return _component("neuron", kind, seed, fields)


def space(kind: str, seed: int = 0, **fields):
    """A stimulus space: `render(z)`, `sample(rng, n)`, and `encode(stimuli)` where it `can_encode`."""
    return _component("space", kind, seed, fields)


def optimizer(kind: str, space, neuron=None, seed: int = 0, **fields):
    """An ask/tell optimizer over `space`: `z = opt.ask()`, then `opt.tell(z, responses)` (maximises)."""
    from closedloop.neurons.base import Neuron
    from closedloop.spaces.base import StimulusSpace

    if not isinstance(space, StimulusSpace):
        raise ProtocolError(f"optimizer: space: expected a space object (closedloop.space(...)), got a "
                            f"{type(space).__name__}")
    if neuron is not None and not isinstance(neuron, Neuron):
        raise ProtocolError(f"optimizer: neuron: expected a neuron object (closedloop.neuron(...)), got a "
                            f"{type(neuron).__name__}")
    return _component("optimizer", kind, seed, fields, space=space, neuron=neuron)


def evolve(model, unit: str | None = None, *, budget: int = 3000, input_shape: tuple[int, ...] | None = None,
           value_range: tuple[float, float] = (0.0, 1.0), space: dict | None = None,
           optimizer: dict | None = None, repeats: int = 1, seed: int = 0, out: str | Path | None = None,
           progress: bool = True, overwrite: bool = False, neuron: dict | None = None, **settings):
    """Evolve, black-box, the stimulus a unit prefers, in the spirit of Lucent's render_vis.

    `model` is a torch module in memory (give `input_shape`, the shape of one stimulus, and the
    `value_range` it expects) or a zoo model's name; `unit` is "layer:channel" ("" for the model's
    output: ":5"), or a zoo unit name. The space defaults to 1/f colour gratings of the input's
    size; the optimizer to CMA-ES, the default for network units. `neuron` sets more of the unit's
    fields (`{"position": [3, 3], "noise": {"kind": "poisson"}}`: see `closedloop fields dnn`). An
    existing `out` is replaced only with `overwrite=True`. Returns the analysed `Run`.
    """
    from closedloop import zoo

    section: dict[str, Any] = {"kind": "dnn"}
    if isinstance(model, str):
        section["model"] = model
        try:
            card = zoo.card(model)
        except ValueError as exc:
            raise ProtocolError(f"evolve: model: {exc}") from None
        if input_shape is not None:
            raise ProtocolError(f"evolve: input_shape: the zoo model {model!r} takes {tuple(card.input_shape)}; give "
                                f"input_shape only for a module of your own")
        shape, value_range = tuple(card.input_shape), tuple(card.value_range)
    else:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise ProtocolError(f"evolve: model: expected a torch.nn.Module or a zoo model's name, got a "
                                f"{type(model).__name__}")
        if input_shape is None:
            raise ProtocolError("evolve: input_shape: required for a module in memory (the shape of one stimulus)")
        if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in plain(list(input_shape))):
            raise ProtocolError(f"evolve: input_shape: the shape of one stimulus as a tuple of sizes, e.g. (3, 64, 64); "
                                f"got {input_shape!r}")
        input_shape = tuple(plain(list(input_shape)))
        section["model"] = zoo.add(model, input_shape=input_shape, value_range=value_range)
        shape = tuple(input_shape)
    if unit is not None and not isinstance(unit, str):
        raise ProtocolError(f"evolve: unit: expected 'layer:channel' or a zoo unit's name, got {unit!r}")
    if not isinstance(model, str) and (unit is None or ":" not in unit):
        given = "missing" if unit is None else f"{unit!r} has no ':'"
        raise ProtocolError(f"evolve: unit: {given}; for a module of your own give 'layer:channel' (a layer's name in "
                            f"named_modules(), e.g. '2:0'), or ':channel' for the model's output")
    if unit is not None and ":" in unit:
        layer, _, channel = unit.rpartition(":")
        if not channel.isdigit():
            raise ProtocolError(f"evolve: unit: {unit!r}: the channel after ':' must be a number ('layer:channel')")
        section.update(layer=layer, channel=int(channel))
    elif unit is not None:
        section["unit"] = unit
    if neuron is not None:
        if not isinstance(neuron, dict):
            raise ProtocolError(f"evolve: neuron: a dict of the unit's fields (closedloop fields dnn), got {neuron!r}")
        taken = sorted(set(neuron) & set(section))
        if taken:
            raise ProtocolError(f"evolve: neuron: {', '.join(taken)}: set by evolve's own arguments (model, unit, "
                                f"input_shape)")
        section.update(neuron)
    protocol = {"kind": "evolve", "seed": seed, "neuron": section, "space": space or default_space(shape, value_range),
                "budget": budget, "generations": None, "repeats": repeats, **settings}
    if optimizer is not None:
        protocol["optimizer"] = optimizer
    return run(protocol, out=out, progress=progress, overwrite=overwrite)


def default_space(shape: tuple[int, ...], value_range=(0.0, 1.0)) -> dict:
    """1/f gratings that fill an image input: colour (or one-channel) images of a square side."""
    if len(shape) == 3 and shape[1] == shape[2]:
        return {"kind": "color_fourier", "size": shape[1], "channels": shape[0], "value_range": list(value_range),
                "max_frequency": min(0.25, 4.0 / shape[1])}
    raise ProtocolError(f"evolve: no default space for stimuli of shape {tuple(shape)}: give space=... "
                        "(e.g. {'kind': 'spectrogram', ...} for sounds; see docs/reference.md)")
