"""Reference torch models for the tests, the demo and the benchmarks. Needs torch.

Each factory takes no argument and returns an eval-mode nn.Module; MODELS gives its input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xpuport.benchmarks.vision import randomize_batchnorm


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def _seeded() -> None:
    torch.manual_seed(0)


def mlp() -> nn.Module:
    _seeded()
    return nn.Sequential(
        nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    ).eval()


def small_cnn() -> nn.Module:
    _seeded()
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        ResidualBlock(16),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    randomize_batchnorm(model)
    return model.eval()


def encoder(d_model: int = 64, heads: int = 4, layers: int = 2) -> nn.Module:
    """A pre-norm transformer encoder (GELU MLP), as in BERT-style exports."""
    _seeded()
    layer = nn.TransformerEncoderLayer(
        d_model,
        heads,
        4 * d_model,
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()


def encoder_256() -> nn.Module:
    return encoder(d_model=256, heads=4, layers=2)


@dataclass(frozen=True)
class ModelEntry:
    factory: str  # MODULE:FACTORY, as `xpuport export` takes it
    inputs: dict[str, tuple[int, ...]]


MODELS = {
    "mlp": ModelEntry("xpuport.benchmarks.models:mlp", {"x": (8, 64)}),
    "cnn": ModelEntry("xpuport.benchmarks.models:small_cnn", {"x": (1, 3, 64, 64)}),
    "encoder": ModelEntry("xpuport.benchmarks.models:encoder", {"x": (2, 32, 64)}),
    "encoder-256": ModelEntry("xpuport.benchmarks.models:encoder_256", {"x": (1, 128, 256)}),
}


class BertLike(nn.Module):
    """Token and position embeddings, then a post-norm encoder: BERT's shape, small."""

    def __init__(self, vocab: int = 8192, d_model: int = 256, heads: int = 4, layers: int = 4,
                 max_len: int = 512) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        self.norm = nn.LayerNorm(d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.encoder(self.norm(self.tokens(ids) + self.positions(positions)))


def bert_like() -> nn.Module:
    _seeded()
    return BertLike().eval()


def encoder_768() -> nn.Module:
    return encoder(d_model=768, heads=12, layers=2)
