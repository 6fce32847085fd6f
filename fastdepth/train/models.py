"""Monodepth2's networks on torchvision's ResNet-18: DepthNet (encoder + skip decoder with sigmoid
disparity heads at 4 scales) and PoseNet (a 6-channel ResNet-18 on a pair of frames -> axis-angle
and translation), and the pose parameterisation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

ENCODER_CHANNELS = (64, 64, 128, 256, 512)
DECODER_CHANNELS = (16, 32, 64, 128, 256)
SCALES = 4
#: ImageNet-style input normalisation used by Monodepth2
INPUT_MEAN, INPUT_STD = 0.45, 0.225


def resnet18(in_channels: int, pretrained: bool) -> torchvision.models.ResNet:
    """torchvision's ResNet-18; ImageNet weights only when asked (no download by default).

    For ``in_channels`` = 3k the first convolution's pretrained weights are tiled and divided by k,
    as Monodepth2 does for its pose encoder.
    """
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1 if pretrained else None
    net = torchvision.models.resnet18(weights=weights)
    if in_channels != 3:
        conv = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if pretrained:
            with torch.no_grad():
                conv.weight.copy_(net.conv1.weight.repeat(1, in_channels // 3, 1, 1) / (in_channels // 3))
        net.conv1 = conv
    net.fc = nn.Identity()
    return net


class ResnetEncoder(nn.Module):
    """Features at strides 2, 4, 8, 16 and 32 (channels ``ENCODER_CHANNELS``)."""

    def __init__(self, in_channels: int = 3, pretrained: bool = False):
        super().__init__()
        self.net = resnet18(in_channels, pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        f0 = n.relu(n.bn1(n.conv1((x - INPUT_MEAN) / INPUT_STD)))
        f1 = n.layer1(n.maxpool(f0))
        f2 = n.layer2(f1)
        f3 = n.layer3(f2)
        return [f0, f1, f2, f3, n.layer4(f3)]


class ConvBlock(nn.Sequential):
    """3x3 reflection-padded convolution + ELU."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3), nn.ELU(inplace=True))


class DepthDecoder(nn.Module):
    """Monodepth2's decoder: nearest x2 upsampling, skip connections, sigmoid disparity at 4 scales."""

    def __init__(self):
        super().__init__()
        self.up0 = nn.ModuleList()
        self.up1 = nn.ModuleList()
        for i in range(4, -1, -1):
            cin = ENCODER_CHANNELS[-1] if i == 4 else DECODER_CHANNELS[i + 1]
            self.up0.append(ConvBlock(cin, DECODER_CHANNELS[i]))
            skip = ENCODER_CHANNELS[i - 1] if i > 0 else 0
            self.up1.append(ConvBlock(DECODER_CHANNELS[i] + skip, DECODER_CHANNELS[i]))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(DECODER_CHANNELS[s], 1, 3)) for s in range(SCALES)
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Disparities in (0, 1), finest first: scale s has shape (B, 1, H / 2**s, W / 2**s)."""
        x = features[-1]
        disps: dict[int, torch.Tensor] = {}
        for k, i in enumerate(range(4, -1, -1)):
            x = F.interpolate(self.up0[k](x), scale_factor=2, mode="nearest")
            if i > 0:
                x = torch.cat([x, features[i - 1]], 1)
            x = self.up1[k](x)
            if i < SCALES:
                disps[i] = torch.sigmoid(self.heads[i](x))
        return [disps[s] for s in range(SCALES)]


class DepthNet(nn.Module):
    """Image (B, 3, H, W) in [0, 1], H and W multiples of 32 -> 4 disparity maps, finest first."""

    def __init__(self, pretrained: bool = False):
        super().__init__()
        self.encoder = ResnetEncoder(3, pretrained)
        self.decoder = DepthDecoder()

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.decoder(self.encoder(image))


class PoseNet(nn.Module):
    """A pair of frames (B, 6, H, W) in temporal order -> axis-angle (B, 3) and translation (B, 3).

    Monodepth2's separate pose encoder and decoder: 1x1 squeeze, three convolutions, spatial mean,
    scaled by 0.01.
    """

    def __init__(self, pretrained: bool = False):
        super().__init__()
        self.encoder = ResnetEncoder(6, pretrained)
        self.decoder = nn.Sequential(
            nn.Conv2d(ENCODER_CHANNELS[-1], 256, 1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 6, 1),
        )

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = 0.01 * self.decoder(self.encoder(pair)[-1]).mean((2, 3))
        return out[:, :3], out[:, 3:]
