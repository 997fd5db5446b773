"""Image classifiers of every zoo architecture class compile for cpu and agree with ORT."""

from __future__ import annotations

import pytest
from integration_models import legacy_cnn
from typer.testing import CliRunner

import xpuport
from xpuport.benchmarks import vision
from xpuport.cli import app

runner = CliRunner()


def compile_and_compare(model_path, tmp_path):
    art = tmp_path / "art"
    compiled = runner.invoke(app, ["compile", str(model_path), "-o", str(art)])
    assert compiled.exit_code == 0, compiled.output
    checked = runner.invoke(app, ["run", str(art), "--random", "--compare", "onnxruntime"])
    assert checked.exit_code == 0, checked.output
    assert "yes" in checked.output


@pytest.mark.parametrize("name", sorted(vision.CLASSIFIERS))
def test_small_classifier_compiles_and_agrees(name, tmp_path):
    model = vision.build(name, width=8, classes=10)
    path = xpuport.export(model, {"x": (1, 3, 96, 96)}, tmp_path / f"{name}.onnx")
    compile_and_compare(path, tmp_path)


def test_legacy_opset_8_model_compiles_and_agrees(tmp_path):
    compile_and_compare(legacy_cnn(tmp_path / "legacy.onnx"), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(vision.CLASSIFIERS))
def test_full_size_classifier_compiles_and_agrees(name, tmp_path):
    model = vision.build(name)
    path = xpuport.export(model, {"x": (1, 3, 224, 224)}, tmp_path / f"{name}.onnx")
    compile_and_compare(path, tmp_path)
