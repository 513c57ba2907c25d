"""MTCNN's O-Net (Zhang et al. 2016) with facenet-pytorch's shipped weights `data/onet.pt`.

Rebuilt here because importing facenet_pytorch pulls torchvision. facenet-pytorch feeds O-Net
48x48 RGB crops in (channel, row, column) order scaled as (pixel - 127.5) / 128, and flattens the
last conv map in (column, row, channel) order before the dense layer (the weights were converted
from the original Caffe model); both are reproduced below. Our input is RGB in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from closedloop.zoo import UnitSpec, ZooModel, channel_units, load_state_dict, package_file

CONV_CHANNELS = {"conv1": 32, "conv2": 64, "conv3": 64, "conv4": 128}


class ONet(nn.Module):
    """Output (N, 2): [face probability, face logit (log-odds of face vs background)]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.prelu1 = nn.PReLU(32)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.prelu2 = nn.PReLU(64)
        self.conv3 = nn.Conv2d(64, 64, 3)
        self.prelu3 = nn.PReLU(64)
        self.conv4 = nn.Conv2d(64, 128, 2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)  # face classification
        self.dense6_2 = nn.Linear(256, 4)  # box regression (unused)
        self.dense6_3 = nn.Linear(256, 10)  # landmarks (unused)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image * 255.0 - 127.5) * 0.0078125
        x = nn.functional.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        logits = self.dense6_1(x)
        face_logit = logits[:, 1] - logits[:, 0]
        return torch.stack([torch.sigmoid(face_logit), face_logit], dim=1)


def lfw_images() -> tuple[torch.Tensor, np.ndarray]:
    """scikit-image's lfw_subset (100 faces, then 100 non-faces, 25x25 grey) as (200, 3, 48, 48)
    RGB in [0, 1], bilinearly upsampled, and labels (1 = face)."""
    from skimage.data import lfw_subset

    grey = torch.from_numpy(lfw_subset().astype(np.float32))[:, None]
    images = nn.functional.interpolate(grey, size=(48, 48), mode="bilinear", align_corners=False)
    return images.clamp(0, 1).expand(-1, 3, -1, -1).contiguous(), np.r_[np.ones(100), np.zeros(100)]


def lfw_selectivity(net: nn.Module) -> dict[str, float]:
    """Mean face probability on lfw_subset faces and non-faces, and the ROC AUC faces vs not."""
    from sklearn.metrics import roc_auc_score

    images, is_face = lfw_images()
    with torch.no_grad():
        probability = net(images)[:, 0].numpy()
    return {"mean_face": float(probability[is_face == 1].mean()),
            "mean_nonface": float(probability[is_face == 0].mean()),
            "auc": float(roc_auc_score(is_face, probability))}


def network() -> nn.Module:
    net = ONet()
    net.load_state_dict(load_state_dict(package_file("facenet_pytorch", "data/onet.pt")))
    return net.eval()


def card() -> ZooModel:
    units = {
        "face_probability": UnitSpec("", 0, None, "O-Net probability that the 48x48 crop is a face", ("face", None)),
        "face_logit": UnitSpec("", 1, None, "O-Net log-odds face vs background", ("face", None)),
    }
    for layer, channels in CONV_CHANNELS.items():
        units.update(channel_units(layer, channels, "pre-PReLU, mean over the map"))
    return ZooModel(
        name="face",
        input_shape=(3, 48, 48),
        value_range=(0.0, 1.0),
        modality="image",
        sample_rate=None,
        default_unit="face_probability",
        description=("MTCNN O-Net face classifier, weights from facenet-pytorch data/onet.pt; on scikit-image "
                     "lfw_subset p(face) 0.999 for faces vs 0.018 for non-faces, ROC AUC 1.000 "
                     "(benchmarks/zoo_units.py)"),
        units=units,
    )
