"""A small CNN trained on scikit-learn's 8x8 digits, deterministically, on first use.

The trained state dict is cached under <cache>/zoo/digits-<recipe hash>.pt; changing the recipe
below changes the hash, so a stale cache is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

import numpy as np
import torch
from torch import nn

from closedloop.zoo import UnitSpec, ZooModel, cache_dir, channel_units, load_state_dict

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
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

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


def train(x_train: np.ndarray, y_train: np.ndarray) -> DigitsNet:
    generator = torch.Generator().manual_seed(RECIPE["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same weights on every machine
    try:
        torch.manual_seed(RECIPE["seed"])
        net = DigitsNet()
        opt = RECIPE["optimizer"]
        optimizer = torch.optim.Adam(net.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, RECIPE["epochs"])
        x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
        net.train()
        for _ in range(RECIPE["epochs"]):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), RECIPE["batch_size"]):
                index = order[start:start + RECIPE["batch_size"]]
                batch = _shifted(x[index], generator, RECIPE["augment_shift"])
                loss = nn.functional.cross_entropy(net(batch), y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        predicted = net(torch.from_numpy(x)).argmax(1).numpy()
    return float((predicted == y).mean())


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def trained_net() -> DigitsNet:
    path = cache_dir() / f"digits-{recipe_hash()}.pt"
    with _train_lock:
        net = DigitsNet()
        if path.is_file():
            net.load_state_dict(load_state_dict(path))
            return net.eval()
        x_train, y_train, _, _ = dataset()
        net = train(x_train, y_train)
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
