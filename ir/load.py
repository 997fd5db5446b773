"""Load an ONNX file and refuse, with the fix, anything that is not a sound model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from xpuport.errors import ExternalDataError, ModelFileError

# Protobuf cannot serialize a message of 2 GiB or more; larger models keep weights outside.
PROTOBUF_LIMIT_BYTES = 2**31 - 1


def load_model(path: str | Path) -> onnx.ModelProto:
    """Parse, check and fully load a model (external data included) from `path`."""
    model_path = Path(path)
    _check_file(model_path)
    try:
        model = onnx.load_model(str(model_path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelFileError(
            f"{model_path}: not a readable ONNX model ({exc.__class__.__name__}: {exc})",
            "check that the file is a complete .onnx file (a truncated download fails "
            "this way); re-export or re-download it",
        ) from exc
    if not model.HasField("graph") or model.ir_version == 0:
        raise ModelFileError(
            f"{model_path}: parses as protobuf but holds no ONNX graph (ir_version "
            f"{model.ir_version}); the file is truncated or not ONNX",
            "re-export the model, or pass the .onnx file rather than another format",
        )
    _load_external_data(model, model_path)
    _check_model(model, model_path)
    return model


def _check_file(model_path: Path) -> None:
    if not model_path.is_file():
        raise ModelFileError(
            f"{model_path}: no such file",
            "give the path of an existing .onnx file",
        )
    size = model_path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{model_path}: the file is empty", "re-export the model")
    if size > PROTOBUF_LIMIT_BYTES:
        raise ModelFileError(
            f"{model_path}: {size} bytes is over protobuf's 2 GiB limit",
            "save the model with external data (onnx.save_model(..., save_as_external_data=True))",
        )


def _load_external_data(model: onnx.ModelProto, model_path: Path) -> None:
    base_dir = model_path.parent.resolve()
    for tensor in _all_tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        info = _external_data_info(tensor, model_path)
        location = info.location
        data_path = (base_dir / location).resolve()
        if not location or not data_path.is_relative_to(base_dir):
            raise ExternalDataError(
                f"{model_path}: initializer '{tensor.name}' points its external data at "
                f"'{location}', outside the model's folder {base_dir}",
                "keep external data files beside the model (or below its folder) and "
                "reference them by relative path; never load a model you do not trust",
            )
        if not data_path.is_file():
            raise ExternalDataError(
                f"{model_path}: initializer '{tensor.name}' needs external data file "
                f"'{location}', which is missing from {base_dir}",
                f"copy '{location}' next to the model file",
            )
        _check_extent(tensor.name, info, data_path, model_path)
    try:
        onnx.load_external_data_for_model(model, str(base_dir))
    except (OSError, ValueError) as exc:
        raise ExternalDataError(
            f"{model_path}: external data could not be read ({exc})",
            "re-save the model with its external data",
        ) from exc
    for tensor in _all_tensors(model.graph):
        # Loaded tensors keep an explicit DEFAULT location; clear it so the same model hashes
        # the same whether its weights were stored inline or beside it.
        tensor.ClearField("data_location")


def _external_data_info(tensor: onnx.TensorProto, model_path: Path) -> ExternalDataInfo:
    try:
        info = ExternalDataInfo(tensor)
        if int(info.offset or 0) < 0 or int(info.length or 0) < 0:
            raise ValueError("negative offset or length")
    except ValueError as exc:
        raise ExternalDataError(
            f"{model_path}: initializer '{tensor.name}' has malformed external data fields ({exc})",
            "re-save the model with onnx.save_model(..., save_as_external_data=True)",
        ) from exc
    return info


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for subgraph in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _all_tensors(subgraph)


def _check_extent(name: str, info: ExternalDataInfo, data_path: Path, model_path: Path) -> None:
    offset = int(info.offset or 0)
    length = int(info.length or 0)
    size = data_path.stat().st_size
    if offset + length > size:
        raise ExternalDataError(
            f"{model_path}: initializer '{name}' reads bytes {offset}..{offset + length} of "
            f"'{data_path.name}', which has only {size} bytes (truncated?)",
            f"restore the complete '{data_path.name}' from the model's source",
        )


def _check_model(model: onnx.ModelProto, model_path: Path) -> None:
    try:
        if model.ByteSize() < PROTOBUF_LIMIT_BYTES:
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(model_path))
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ModelFileError(
            f"{model_path}: fails the ONNX checker: {first_line}",
            "fix the exporter's output (or re-export with a current exporter); "
            "`python -m onnx.checker`-style details are in the message above",
        ) from exc
