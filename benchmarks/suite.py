"""The benchmark suite: the models `xpuport bench --suite` times, each at two batch sizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from xpuport.benchmarks import models, vision


@dataclass(frozen=True)
class SuiteModel:
    name: str
    factory: Callable[[], nn.Module]
    shape: tuple[int, ...]  # without the batch dimension
    dtype: str = "float32"  # the input's dtype ("int64": token ids)
    batches: tuple[int, int] = (1, 8)
    input_name: str = "x"


SUITE = (
    SuiteModel("mlp", models.mlp, (64,), batches=(1, 64)),
    SuiteModel("resnet-like-cnn", models.small_cnn, (3, 224, 224)),
    SuiteModel("resnet50", lambda: vision.build("resnet50"), (3, 224, 224), batches=(1, 4)),
    SuiteModel("encoder-256", models.encoder_256, (128, 256)),
    SuiteModel("encoder-768", models.encoder_768, (128, 768)),
    SuiteModel("bert-like", models.bert_like, (128,), dtype="int64", input_name="ids"),
)


def suite_models(names: str = "") -> list[SuiteModel]:
    """The suite, or the models named in a comma-separated list (unknown names: KeyError)."""
    if not names:
        return list(SUITE)
    by_name = {model.name: model for model in SUITE}
    return [by_name[name.strip()] for name in names.split(",") if name.strip()]
