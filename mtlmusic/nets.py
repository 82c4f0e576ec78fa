"""Building blocks of the feature network (paper Table 3), the task heads and the self head.

The feature network maps a standardized mel slice of shape ``(2, 216, 128)``
(channel, time, mel) to a 256-dimensional representation. It is a sequence of
*stages* so that architectures can cut it at any point and share the first part
between tasks (see :mod:`mtlmusic.architectures`).

Examples
--------
>>> import torch
>>> from mtlmusic.nets import feature_stages
>>> net = torch.nn.Sequential(*feature_stages())
>>> net.eval()(torch.zeros(3, 2, 216, 128)).shape
torch.Size([3, 256])
"""

from __future__ import annotations

import torch
from torch import nn

#: Size of the representation (fc-feature) of one feature network.
FEATURE_DIM = 256
#: Names of the stages of the feature network, in order (paper Table 3).
STAGE_NAMES = ("block1", "block2", "block3", "block4", "block5", "block6a", "block6b", "gap", "fc")


class ConvBlock(nn.Module):
    """Conv2d (same padding) -> BatchNorm2d -> ReLU -> optional 2x2 max pooling.

    The ReLU is applied after the pooling, on a quarter of the values: max
    pooling and ReLU commute, so the result is the same.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int,
                 stride: tuple[int, int] = (1, 1), pool: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.pool(self.bn(self.conv(x))))


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` as two elementwise maxima (row pairs, then column pairs): the same values, faster on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        rows = torch.maximum(x[:, :, 0:height:2, :width], x[:, :, 1:height:2, :width])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class GlobalAveragePool(nn.Module):
    """Mean over time and mel: ``(n, c, t, f) -> (n, c)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class FeatureLayer(nn.Module):
    """fc-feature: Linear 256 -> 256, BatchNorm1d, ReLU, Dropout 0.5.

    The representation is the ReLU output; dropout acts only in training.
    """

    def __init__(self, dim: int = FEATURE_DIM):
        super().__init__()
        self.linear = nn.Linear(256, dim)
        self.bn = nn.BatchNorm1d(dim)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.bn(self.linear(x))))


def feature_stages(dim: int = FEATURE_DIM) -> list[nn.Module]:
    """Return fresh stages of the Table 3 feature network, in :data:`STAGE_NAMES` order."""
    stages = [
        ConvBlock(2, 16, 5, stride=(2, 1)),
        ConvBlock(16, 32, 3),
        ConvBlock(32, 64, 3),
        ConvBlock(64, 64, 3),
        ConvBlock(64, 128, 3),
        ConvBlock(128, 256, 3, pool=False),
        ConvBlock(256, 256, 1, pool=False),
        GlobalAveragePool(),
        FeatureLayer(dim),
    ]
    for stage in stages:
        glorot_init(stage)
    return stages


class SelfHead(nn.Module):
    """Siamese head of the self source: concat(left, right) -> Linear 128 -> BN -> ReLU -> Dropout -> Linear 2.

    Returns logits of (different track, same track).
    """

    def __init__(self, dim: int = FEATURE_DIM, hidden: int = 128):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(2 * dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 2))
        glorot_init(self)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([left, right], dim=1))


def task_head(dim: int, n_out: int) -> nn.Linear:
    """fc-output of one task: Linear ``dim -> n_out`` giving logits (softmax is applied by the loss)."""
    head = nn.Linear(dim, n_out)
    glorot_init(head)
    return head


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a Conv2d or Linear into it, in place; returns ``module``.

    The result computes the same function in eval mode with fewer operations;
    use it on a copy of a network, for inference only.

    >>> import copy, torch
    >>> net = torch.nn.Sequential(*feature_stages()).eval()
    >>> folded = fold_batchnorm(copy.deepcopy(net))
    >>> x = torch.randn(2, 2, 216, 128)
    >>> torch.allclose(net(x), folded(x), atol=1e-4)
    True
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    for layer in module.modules():
        if isinstance(layer, ConvBlock) and isinstance(layer.bn, nn.BatchNorm2d):
            layer.conv, layer.bn = fuse_conv_bn_eval(layer.conv.eval(), layer.bn.eval()), nn.Identity()
        elif isinstance(layer, FeatureLayer) and isinstance(layer.bn, nn.BatchNorm1d):
            layer.linear, layer.bn = fuse_linear_bn_eval(layer.linear.eval(), layer.bn.eval()), nn.Identity()
    return module


def use_elementwise_pooling(module: nn.Module) -> nn.Module:
    """Replace the ``MaxPool2d(2)`` of every :class:`ConvBlock` by :class:`MaxPool2x2`, in place; returns ``module``.

    For CPU inference (the gradients differ where values tie).

    >>> import torch
    >>> net = torch.nn.Sequential(*feature_stages()).eval()
    >>> x = torch.randn(2, 2, 216, 128)
    >>> torch.equal(net(x), use_elementwise_pooling(net)(x))
    True
    """
    for layer in module.modules():
        if isinstance(layer, ConvBlock) and isinstance(layer.pool, nn.MaxPool2d):
            layer.pool = MaxPool2x2()
    return module


def glorot_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every Conv2d and Linear inside ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
