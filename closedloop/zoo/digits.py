"""A small CNN trained on scikit-learn's 8x8 digits, deterministically, on first use.

The trained state dict is cached under <cache>/zoo/digits-<recipe hash>.pt; changing the recipe
below changes the hash, so a stale cache is never used.

The same recipe can raise the network on other experience (the rearing experiment,
closedloop/experiments/rearing.py): static shown as an 11th "none of these" class, or static
behind some of the digits. Such a recipe is RECIPE plus a "rearing" entry, so it hashes to its
own cache file, and the standard recipe's weights and cache file stay as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

import numpy as np
import torch
from torch import nn

from closedloop.stimuli import STATIC_COLOURS, noise
from closedloop.zoo import UnitSpec, ZooModel, cache_dir, channel_units, load_state_dict, train_classifier

RECIPE = {
    "version": 2,
    "architecture": "conv3x3(1->16) relu conv3x3(16->32) relu maxpool2 fc(512->64) relu fc(64->10)",
    "split": {"test_size": 0.25, "random_state": 0, "stratify": True},
    "seed": 0,
    "optimizer": {"name": "adam", "lr": 3e-3, "weight_decay": 1e-4},
    "epochs": 30,
    "batch_size": 64,
    "augment_shift": 1,  # random translation by up to this many pixels
}
_train_lock = threading.Lock()


class DigitsNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def dataset() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); images (n, 1, 8, 8) float32 in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    split = RECIPE["split"]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=split["test_size"], random_state=split["random_state"],
        stratify=digits.target if split["stratify"] else None)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def _shifted(batch: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Each image translated by a random (dy, dx) in [-max_shift, max_shift], zeros shifted in."""
    if max_shift == 0:
        return batch
    padded = nn.functional.pad(batch, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(batch), 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(8))[:, :, None]  # (n, 8, 1)
    columns = (offsets[:, 1, None] + torch.arange(8))[:, None, :]  # (n, 1, 8)
    return padded[torch.arange(len(batch))[:, None, None], 0, rows, columns][:, None]


def recipe(rearing: dict | None = None) -> dict:
    """RECIPE, or RECIPE raised on other experience. `rearing` may hold
    static: "white" | "pink" | "brown"  static shown as class 10, "none of these"
    static_share: float                static images added to each batch, per digit in it
    backgrounds: "white" | "pink" | "brown"  static behind a share of the digits
    background_share: float            that share
    contrast: [low, high]              RMS of the static (of the 0..1 range), uniform per image
    seed: int, epochs: int             the training seed and length (default RECIPE's)
    Nothing given (or only RECIPE's seed and epochs) is the standard recipe itself."""
    rearing = dict(rearing or {})
    schedule = {"seed": rearing.pop("seed", None), "epochs": rearing.pop("epochs", None)}
    schedule = {k: v for k, v in schedule.items() if v is not None and v != RECIPE[k]}
    experience = {k: v for k, v in rearing.items() if v is not None}
    if "static" not in experience:
        experience.pop("static_share", None)
    if "backgrounds" not in experience:
        experience.pop("background_share", None)
    if not {"static", "backgrounds"} & set(experience):
        experience = {}
    if not experience and not schedule:
        return RECIPE
    return {**RECIPE, **schedule, **({"rearing": experience} if experience else {})}


def classes(spec: dict) -> int:
    """10 digits, plus "none of these" when static is shown as its own class."""
    return 11 if "static" in spec.get("rearing", {}) else 10


class Experience:
    """What a reared network sees besides the digits, drawn batch by batch from its own stream."""

    def __init__(self, rearing: dict, seed: int):
        self.rearing = rearing
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))

    def static(self, n: int, kind: str) -> torch.Tensor:
        noise_kind, alpha = STATIC_COLOURS[kind]
        low, high = self.rearing.get("contrast", (0.1, 0.4))
        contrast = self.rng.uniform(low, high, (n, 1, 1, 1))
        patterns = noise(self.rng, n, (1, 8, 8), noise_kind, alpha)
        return torch.from_numpy(np.clip(0.5 + contrast * patterns, 0.0, 1.0).astype(np.float32))

    def add(self, batch: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rearing = self.rearing
        if "backgrounds" in rearing:
            behind = np.nonzero(self.rng.random(len(batch)) < rearing.get("background_share", 0.5))[0]
            if len(behind):
                background = self.static(len(behind), rearing["backgrounds"])
                digits = batch[behind]
                batch = batch.clone()
                batch[behind] = digits + (1 - digits) * background  # bright ink drawn over the static
        if "static" in rearing:
            n = max(1, round(rearing.get("static_share", 0.1) * len(batch)))
            batch = torch.cat([batch, self.static(n, rearing["static"])])
            labels = torch.cat([labels, torch.full((n,), 10, dtype=labels.dtype)])
        return batch, labels


def train(x_train: np.ndarray, y_train: np.ndarray, rearing: dict | None = None) -> DigitsNet:
    spec = recipe(rearing)
    experience = Experience(spec["rearing"], spec["seed"]) if "rearing" in spec else None
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)

    def epoch(generator):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), spec["batch_size"]):
            index = order[start:start + spec["batch_size"]]
            batch, labels = _shifted(x[index], generator, spec["augment_shift"]), y[index]
            yield (batch, labels) if experience is None else experience.add(batch, labels)

    return train_classifier(lambda: DigitsNet(classes(spec)), spec, epoch)


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = net(torch.from_numpy(x)).argmax(1).numpy()
    return float((predicted == y).mean())


def recipe_hash(rearing: dict | None = None) -> str:
    return hashlib.sha256(json.dumps(recipe(rearing), sort_keys=True).encode()).hexdigest()[:12]


def trained_net(rearing: dict | None = None) -> DigitsNet:
    """The network of the standard recipe, or raised on `rearing` (see recipe), trained once and cached."""
    path = cache_dir() / f"digits-{recipe_hash(rearing)}.pt"
    with _train_lock:
        net = DigitsNet(classes(recipe(rearing)))
        if path.is_file():
            net.load_state_dict(load_state_dict(path))
            return net.eval()
        x_train, y_train, _, _ = dataset()
        net = train(x_train, y_train, rearing)
        partial = path.with_suffix(f".{os.getpid()}.part")
        torch.save(net.state_dict(), partial)
        os.replace(partial, path)  # atomic: a concurrent process never reads half a file
        return net


def network() -> nn.Module:
    return trained_net()


def card() -> ZooModel:
    units = {f"class{k}": UnitSpec("", k, None, f"logit of digit {k}", ("digit", k)) for k in range(10)}
    for layer, channels in (("conv1", 16), ("conv2", 32)):
        units.update(channel_units(layer, channels, "pre-ReLU, mean over the 8x8 map"))
    return ZooModel(
        name="digits",
        input_shape=(1, 8, 8),
        value_range=(0.0, 1.0),
        modality="image",
        sample_rate=None,
        default_unit="class3",
        description=("small CNN trained here on scikit-learn's 8x8 digits (held-out accuracy 0.991 on 450 "
                     "test digits, benchmarks/zoo_units.py); outputs 10 class logits"),
        units=units,
    )
