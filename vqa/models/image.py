"""Image encoders: an image (B, 3, H, W) becomes a grid of region features (B, N, C), N = h * w.

Regions are listed row-major, so region ``n`` is grid cell ``(n // w, n % w)``. ``out_dim`` is C and
``grid((H, W))`` is the ``(h, w)`` grid of an input of that size (the input pipeline's image size).
``BoxEncoder`` pools any of them over boxes instead: (B, 3, H, W) and boxes (B, K, 4) -> (B, K, C).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import roi_align


def coordinates(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) x and y coordinates in [-1, 1]."""
    ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W)
    return grid.expand(b, -1, -1, -1)


class SmallCNN(nn.Module):
    """A few stride-2 convolutions for small synthetic images, with coordinates in and out.

    Deep ImageNet backbones leak absolute position through padding; a shallow CNN does not. Two
    coordinate channels are appended to the input (Liu et al. 2018, "CoordConv"), and the output
    also carries ``coord_gates`` pairs of gated coordinates ``sigmoid(w_g^T f) * (x, y)``: a region
    reports where it is only where a learned detector fires, so attention-pooled features keep the
    position of the attended object instead of averaging in the empty background's.

    Args:
        channels: output channels of each stride-2 stage; the grid is the input size over
            ``2**len(channels)``, rounded up.
        coord_gates: number of gated coordinate pairs added to the output (0 for none).
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), coord_gates: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3 + 2
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.gates = nn.Conv2d(c_in, coord_gates, 1) if coord_gates else None
        self.out_dim = c_in + 2 * coord_gates
        self.stages = len(channels)

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) regions of an (H, W) input: each stride-2 convolution (kernel 3, padding 1)
        maps a side n to ceil(n / 2)."""
        h, w = image_size
        for _ in range(self.stages):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        x = self.net(torch.cat([image, coordinates(b, h, w, image)], 1))  # (B, C, h, w)
        if self.gates is not None:
            g = torch.sigmoid(self.gates(x))  # (B, G, h, w)
            xy = coordinates(b, *x.shape[2:], x)  # (B, 2, h, w)
            gated = (g.unsqueeze(2) * xy.unsqueeze(1)).flatten(1, 2)  # (B, G, 2, h, w) -> (B, 2G, h, w)
            x = torch.cat([x, gated], 1)
        return x.flatten(2).transpose(1, 2)  # (B, C', h*w) -> (B, N, C')


def _backbone(name: str, weights: str | None) -> nn.Module:
    """``get_model``; weights torchvision cannot download (no network) are one error naming the
    file and where a copy of it would be read instead."""
    try:
        return get_model(name, weights=weights)
    except OSError as e:  # URLError, refused or timed-out connections, while torch.hub fetches
        url = get_model_weights(name).verify(weights).url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        raise ValueError(f"{name} weights {weights}: cannot download {url} "
                         f"({getattr(e, 'reason', None) or e}); without network, put the file at "
                         f"{cached} or give a local state dict (--weights path/to/{cached.name})"
                         ) from e


class TorchvisionEncoder(nn.Module):
    """Any torchvision backbone, cut at ``layer`` (the paper: ResNet-152 ``layer4``, 448 x 448 input
    -> 14 x 14 x 2048).

    Args:
        name: a ``torchvision.models.get_model`` name, e.g. ``resnet152`` or ``vgg19``.
        weights: ``None`` (random init), a torchvision weights name such as ``IMAGENET1K_V2``
            (downloaded by torchvision into its cache), or a local ``.pt``/``.pth`` state dict.
        layer: the graph node whose output is the grid (``layer4`` for ResNets, ``features`` for VGG).
        frozen: keep the backbone in eval mode without gradients (the paper's setting).
    """

    def __init__(self, name: str = "resnet152", weights: str | None = None, layer: str = "layer4",
                 frozen: bool = True) -> None:
        super().__init__()
        is_file = weights is not None and weights.endswith((".pt", ".pth", ".bin"))
        backbone = _backbone(name, None if is_file else weights)
        if is_file:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            backbone.load_state_dict(state)
        self.body = create_feature_extractor(backbone, {layer: "grid"})
        self.frozen = frozen
        if frozen:
            self.body.requires_grad_(False)
        self.out_dim = self._probe((224, 224)).shape[1]

    @torch.no_grad()
    def _probe(self, image_size: tuple[int, int]) -> torch.Tensor:
        training, device = self.body.training, next(self.body.parameters()).device
        out = self.body.eval()(torch.zeros(1, 3, *image_size, device=device))["grid"]  # (1, C, h, w)
        self.body.train(training)
        return out

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) regions of an (H, W) input (ResNet ``layer4``: side / 32, 448 -> 14)."""
        return tuple(self._probe(tuple(image_size)).shape[2:])

    def train(self, mode: bool = True) -> TorchvisionEncoder:
        super().train(mode)
        if self.frozen:  # batch-norm statistics stay those of the pretrained backbone
            self.body.eval()
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = self.body(image)["grid"]  # (B, C, h, w)
        return x.flatten(2).transpose(1, 2)  # (B, N, C)


class BoxEncoder(nn.Module):
    """Region features over boxes: a grid encoder's feature map pooled by RoIAlign (He et al.,
    "Mask R-CNN", 2017; ``torchvision.ops.roi_align``) in each box, averaged over its
    ``output_size`` x ``output_size`` bins. The bottom-up features (Anderson et al. 2018) pool a
    detector's own ResNet-101 map the same way; here the map is the wrapped encoder's.

    Args:
        encoder: a grid image encoder (``SmallCNN``, ``TorchvisionEncoder``): its ``grid`` gives the
            feature map's size.
        output_size: RoIAlign bins per side.
        sampling_ratio: sample points per bin side (RoIAlign's).
    """

    def __init__(self, encoder: nn.Module, output_size: int = 2, sampling_ratio: int = 2) -> None:
        super().__init__()
        self.encoder, self.output_size, self.sampling_ratio = encoder, output_size, sampling_ratio
        self.out_dim = encoder.out_dim
        self._grids: dict[tuple[int, int], tuple[int, int]] = {}

    def forward(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``image`` (B, 3, H, W), ``boxes`` (B, K, 4) corners over the image size -> (B, K, C)."""
        b, k = boxes.shape[:2]
        size = tuple(image.shape[-2:])
        if size not in self._grids:  # the encoder's grid at this input size, worked out once
            self._grids[size] = tuple(self.encoder.grid(size))
        h, w = self._grids[size]
        fmap = self.encoder(image).transpose(1, 2).reshape(b, -1, h, w)  # (B, N, C) -> (B, C, h, w)
        scale = boxes.new_tensor([w, h, w, h])
        rois = list((boxes.float() * scale).unbind(0))  # B x (K, 4) in feature-map cells
        pooled = roi_align(fmap.float(), rois, self.output_size, spatial_scale=1.0,
                           sampling_ratio=self.sampling_ratio, aligned=True)  # (B*K, C, s, s)
        return pooled.mean((2, 3)).view(b, k, -1).to(fmap.dtype)  # (B, K, C)
