"""A unit of a deep network as a neuron: one channel of one layer of any torch module.

The network is a zoo model (`model: digits`) or the user's own (`import: package.module:factory`
plus an optional `weights: file.pt`). The layer's output is read through a forward hook that
clones it, so an in-place operation further on (ReLU(inplace=True)) cannot overwrite it. The
response is that channel at one position, or its mean over positions. Optional noise turns the
deterministic unit into a noisy cell; the clean activation is always logged beside it.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from closedloop.component import ImportTarget, Level, ProtocolPath, Settings, check_batch
from closedloop.errors import reason
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.registry import register

MAX_STIMULUS_VALUES = 10_000_000  # values in one stimulus of an imported model: 40 MB of float32


class NoiseSettings(Settings):
    kind: Literal["none", "poisson", "gaussian"] = Field("none", description="none: the response is the activation")
    rate_scale: float = Field(20.0, gt=0, le=1e6, description="poisson: counts ~ Poisson(rate_scale * max(0, activation))")
    sigma: float = Field(0.1, ge=0, le=100, description="gaussian: response = activation * (1 + sigma * N(0, 1))")


class DNNSettings(Settings):
    model: str | None = Field(None, description="a zoo model name (see `closedloop zoo`)")
    import_: ImportTarget | None = Field(None, alias="import", description="or your own: 'module:factory' (a module "
                                        "installed or beside the protocol) or 'file.py:factory'")
    weights: ProtocolPath | None = Field(None, description="a state_dict file for the imported model (beside the protocol)")
    input_shape: tuple[Annotated[int, Field(ge=1, le=100_000)], ...] | None = Field(
        None, min_length=1, max_length=4, description="imported model: shape of one stimulus")
    value_range: tuple[Level, Level] = Field((0.0, 1.0), description="imported model: the input range it expects")
    modality: Literal["image", "audio"] = Field("image", description="imported model: image or audio")
    sample_rate: int | None = Field(None, ge=1000, le=384_000, description="imported audio model: the sample rate it expects, Hz")
    unit: str | None = Field(None, description="a zoo unit name; default the model's default unit")
    layer: str | None = Field(None, description="module path of the layer ('' = the model's output)")
    channel: int | None = Field(None, ge=0, le=1_000_000, description="channel index on axis 1 of the layer's output")
    position: tuple[Annotated[int, Field(ge=-100_000, le=100_000)], ...] | None = Field(
        None, max_length=4, description="index into the remaining axes; default their mean")
    objective: Literal["unit", "layer_energy"] = Field(
        "unit", description="unit: one channel (at a position, or its mean); layer_energy: the mean square of the "
                            "layer's whole output, every channel and position (DeepDream's objective)")
    noise: NoiseSettings = Field(NoiseSettings(), description="noise that makes the unit a noisy cell")
    batch_size: int = Field(256, ge=1, le=100_000, description="stimuli per forward pass")
    threads: int = Field(1, ge=1, le=1024, description="torch threads (at most the cores)")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d{1,2})?|mps)$",
                        description="where torch computes: cpu, cuda, cuda:N (a GPU) or mps (Apple); the "
                                    "responses are the same numbers up to float rounding")
    period: float = Field(0.1, gt=0, le=3600, description="nominal time per presentation, for t_start, s")

    @model_validator(mode="after")
    def _one_model(self):
        if (self.model is None) == (self.import_ is None):
            raise ValueError("give exactly one of model (a zoo name) or import (package.module:factory)")
        if self.import_ is not None and self.input_shape is None:
            raise ValueError("input_shape: required with import (the shape of one stimulus)")
        if self.input_shape is not None and math.prod(self.input_shape) > MAX_STIMULUS_VALUES:
            raise ValueError(f"input_shape: {list(self.input_shape)} is {math.prod(self.input_shape):.3g} values per "
                             f"stimulus; at most {MAX_STIMULUS_VALUES:.0e}")
        if self.import_ is not None and self.unit is not None:
            raise ValueError("unit: names zoo units only; give layer/channel/position for an imported model")
        if self.import_ is not None and self.modality == "audio" and self.sample_rate is None:
            raise ValueError("sample_rate: required with an imported audio model (the rate it expects, Hz)")
        if self.objective == "layer_energy":
            for name in ("unit", "channel", "position"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: not with objective layer_energy, whose response is the whole layer")
            if self.layer is None:
                raise ValueError("layer: required with objective layer_energy (the layer whose energy is the response)")
        if self.model is not None:
            for name in ("weights", "input_shape", "value_range", "modality", "sample_rate"):
                if name in self.model_fields_set:
                    raise ValueError(f"{name}: only for an imported model; zoo model {self.model!r} declares its own")
        return self


def import_factory(path: str):
    """'package.module:attribute', 'FOLDER/package.module:attribute' (a module in FOLDER, as
    protocol paths resolve it) or 'file.py:attribute' -> the attribute, without eval."""
    module_name, sep, attribute = path.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"import: expected 'module:factory' or 'file.py:factory', got {path!r}")
    folder, _, module_name = module_name.rpartition("/")
    if module_name.endswith(".py"):
        if not (Path(folder or ".") / module_name).is_file():
            raise ValueError(f"import: no such file {str(Path(folder or '.') / module_name)!r}")
        module_name = module_name.removesuffix(".py")
    # as `python -m` would: modules in the folder (else the working directory) are importable
    search = str(Path(folder).resolve()) if folder else os.getcwd()
    added = search not in sys.path and (bool(folder) or "" not in sys.path)
    if added:
        sys.path.insert(0, search)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"import: cannot import module {module_name!r} ({exc})") from None
    except (Exception, SystemExit) as exc:  # the user's module failed while it was imported: say so in one line
        raise ValueError(f"import: module {module_name!r} failed while importing: {type(exc).__name__}: "
                         f"{reason(exc)}") from None
    finally:
        if added:
            sys.path.remove(search)
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"import: module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def build_imported(config: DNNSettings) -> torch.nn.Module:
    factory = import_factory(config.import_)
    try:
        module = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    except (Exception, SystemExit) as exc:  # the user's factory failed
        raise ValueError(f"import: {config.import_} failed: {type(exc).__name__}: {reason(exc)}") from None
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"import: {config.import_} gave a {type(module).__name__}, not a torch.nn.Module")
    if config.weights is not None:
        path = Path(config.weights).expanduser()
        if not path.is_file():
            raise ValueError(f"weights: no such file {str(path)!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            module.load_state_dict(state)
        except Exception as exc:  # unpickling refusals, key or shape mismatches
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"weights: cannot load {str(path)!r} into {config.import_} ({message})") from None
    return module.float().eval()


def torch_threads(requested: int) -> int:
    """Set torch's intra-op threads, never above the cores we may use. One is the default: the
    units are small networks fed small batches, and when other processes share the cores torch's
    spinning worker threads made a step 10-100x slower in our measurements."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = min(requested, cores)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def usable_device(name: str) -> torch.device:
    """The torch device `name`, refused in one line where this machine has none."""
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or a torch built without CUDA)"
            raise ValueError(f"device: {name!r} is not here: this machine has {have}; use cpu")
    elif name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device: 'mps' is not here (no Apple GPU, or a torch built without it); use cpu")
    return torch.device(name)


@register("neuron", "dnn")
class DNNUnit(Neuron):
    """One channel of one layer of a torch module, optionally at one position."""

    Config = DNNSettings
    has_gradient = True
    model_based_search = False
    energy = False  # the response is the layer's energy (objective: layer_energy), not one channel

    def __init__(self, config: DNNSettings, seed: int):
        super().__init__(config, seed)
        torch_threads(config.threads)
        layer, channel, position = self._network(config)
        self.device = usable_device(getattr(config, "device", "cpu"))  # a subclass's own settings may have none
        self.module = self.module.to(self.device)
        self.layer, self.channel = layer or "", 0 if channel is None else channel
        self.position = None if position is None else tuple(position)
        layers = dict(self.module.named_modules())
        if self.layer not in layers:
            names = [name for name in layers if name]
            raise ValueError(f"layer: no module {self.layer!r} in the model (one of: {', '.join(names[:12])}"
                             f"{' ...' if len(names) > 12 else ''})")
        self._target = layers[self.layer]
        self.response_unit = "counts" if config.noise.kind == "poisson" else "energy" if self.energy else "activation"
        self.clock, self.calls = 0.0, 0
        self.log_name = getattr(config, "model", None)  # a subclass's own settings may have none
        self._check_selection()

    def _network(self, config) -> tuple[str | None, int | None, tuple[int, ...] | None]:
        """Set the module, its input contract (stimulus_shape, value_range, modality, sample_rate)
        and the unit's claim; return the unit's (layer, channel, position), None where unset."""
        layer, channel, position = config.layer, config.channel, config.position
        self.energy = config.objective == "layer_energy"
        if config.model is not None:
            from closedloop import zoo

            try:
                model = zoo.load(config.model)
            except ValueError as exc:
                raise ValueError(f"model: {exc}") from None
            self.module = model.module.eval()
            self.stimulus_shape = tuple(model.input_shape)
            self.value_range = tuple(model.value_range)
            self.modality = model.modality
            self.sample_rate = model.sample_rate
            if config.unit is not None or layer is None:
                try:
                    spec = model.unit(config.unit or model.default_unit)
                except ValueError as exc:
                    raise ValueError(f"unit: {exc}") from None
                if (layer, channel, position) == (None, None, None):
                    self.claim = spec.claim
                layer = spec.layer if layer is None else layer
                channel = spec.channel if channel is None else channel
                position = spec.position if position is None else position
        else:
            self.module = build_imported(config)
            self.stimulus_shape = tuple(config.input_shape)
            self.value_range = tuple(config.value_range)
            self.modality = config.modality
            self.sample_rate = config.sample_rate
        return layer, channel, position

    @contextmanager
    def _capture(self):
        """The target layer's output of the forward pass run inside, as a clone (of its last
        call, should the model call the layer more than once)."""
        captured = {}

        def hook(module, inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            captured["output"] = output.clone()

        handle = self._target.register_forward_hook(hook)
        try:
            yield captured
        finally:
            handle.remove()

    def _select(self, output: torch.Tensor) -> torch.Tensor:
        if self.energy:
            return output.reshape(len(output), -1).pow(2).mean(dim=1)
        if output.ndim < 2 or self.channel >= output.shape[1]:
            raise ValueError(f"channel: {self.channel} out of range for layer {self.layer!r} "
                             f"with output shape {tuple(output.shape[1:])}")
        values = output[:, self.channel]
        if self.position is None:
            return values.reshape(len(values), -1).mean(dim=1)
        if len(self.position) != values.ndim - 1 or any(
                not -n <= p < n for p, n in zip(self.position, values.shape[1:])):
            raise ValueError(f"position: {list(self.position)} does not index the positions "
                             f"{tuple(values.shape[1:])} of layer {self.layer!r} channel {self.channel}")
        return values[(slice(None), *self.position)]

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The unit's value for a batch, computed on the device, returned on the CPU."""
        value = self._forward_on_device(batch.to(self.device)).cpu()
        if value.shape != (len(batch),):
            raise ValueError(f"the unit gives {tuple(value.shape)} values for a batch of {len(batch)} stimuli, not one "
                             f"per stimulus: does the network keep the batch axis first?")
        return value

    def _forward_on_device(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.layer:  # the model's own output: no hook needed
            output = self.module(batch)
            output = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"the network returned a {type(output).__name__}, not a tensor")
            return self._select(output)
        with self._capture() as captured:
            self.module(batch)
        return self._select(captured["output"])

    def _check_selection(self):
        """Fail at construction, not mid-run, when layer/channel/position do not fit."""
        probe = torch.full((2, *self.stimulus_shape), float(np.mean(self.value_range)))  # 2: the batch axis shows
        try:
            with torch.no_grad():
                self._forward(probe)
        except (RuntimeError, IndexError, TypeError) as exc:  # the network's own complaint about the shape
            what = "input_shape" if getattr(self.config, "import_", None) is not None else "model"
            raise ValueError(f"{what}: the network does not take stimuli of shape {self.stimulus_shape} (a batch "
                             f"{tuple(probe.shape)}): {reason(exc)}") from None

    def _as_batch(self, stimuli) -> np.ndarray:
        check_batch(self, stimuli)
        return np.asarray(stimuli, dtype=np.float32)

    def activation(self, stimuli) -> np.ndarray:
        """The clean unit activation (n,), in chunks of batch_size."""
        return self._activation(self._as_batch(stimuli))

    def _activation(self, stimuli: np.ndarray) -> np.ndarray:
        size = self.config.batch_size
        with torch.no_grad():
            parts = [self._forward(torch.from_numpy(stimuli[i:i + size])).double().numpy()
                     for i in range(0, len(stimuli), size)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def present(self, stimuli, repeats: int) -> Trials:
        clean = self._activation(np.asarray(stimuli, dtype=np.float32))  # checked by Neuron
        n, noise = len(clean), self.config.noise
        rng = self.rng(self.calls)
        self.calls += 1
        slot = interleaved_order(n, repeats, rng)
        t_start = self.clock + slot * self.config.period
        self.clock += n * repeats * self.config.period
        expected = np.repeat(clean[:, None], repeats, axis=1)
        if noise.kind == "poisson":
            expected = noise.rate_scale * np.maximum(expected, 0.0)
            responses = rng.poisson(expected).astype(np.float64)
        elif noise.kind == "gaussian":
            responses = expected * (1.0 + noise.sigma * rng.standard_normal(expected.shape))
        else:
            responses = expected.copy()
        return Trials(responses=responses, t_start=t_start, clean=expected)

    def gradient(self, stimuli) -> tuple[np.ndarray, np.ndarray]:
        """Clean activations (n,) and their gradients with respect to the stimuli (n, *shape)."""
        stimuli = self._as_batch(stimuli)
        size, values, grads = self.config.batch_size, [], []
        for i in range(0, len(stimuli), size):
            batch = torch.from_numpy(stimuli[i:i + size]).requires_grad_(True)
            with torch.enable_grad():
                value = self._forward(batch)
                (grad,) = torch.autograd.grad(value.sum(), batch)
            values.append(value.detach().double().numpy())
            grads.append(grad.double().numpy())
        if not values:
            return np.zeros(0), np.zeros((0, *self.stimulus_shape))
        return np.concatenate(values), np.concatenate(grads)

    def describe(self):
        return {"kind": self.kind, **self.config.model_dump(mode="json", by_alias=True)}

    def get_state(self):
        return {"clock": np.array([self.clock]), "calls": np.array([self.calls])}

    def set_state(self, state):
        self.clock = float(state["clock"][0])
        self.calls = int(state["calls"][0])
