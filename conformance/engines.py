"""How a backend runs a batch of cases: TVM backends compile many cases into one module.

Device-only (the default), a case is lowered as `compile` lowers a model (canonicalized,
declined nodes decomposed where that makes them run on the backend), and a case the backend
still declines is unsupported.
With fallback, each case is compiled as `xpuport compile` compiles a model: decomposed,
placed, the declined nodes run on the host; a case of which no node runs on the device is
still unsupported.
"""

from __future__ import annotations

import ctypes
import json
import math
import shutil
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import tvm
from tvm import relax

from xpuport.backends.base import Backend, CompileOptions, TvmBackend
from xpuport.backends.ort import OrtBackend
from xpuport.conformance.cases import Case
from xpuport.conformance.evaluate import error_text
from xpuport.errors import PluginError
from xpuport.hw_profiles import HardwareProfile
from xpuport.ir.canonicalize import canonicalize
from xpuport.lowering.artifact import PLACEMENT, flatten_outputs
from xpuport.lowering.decompose import decompose
from xpuport.lowering.pipeline import lower
from xpuport.lowering.to_relax import to_relax

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclass
class Prepared:
    """A batch made ready: runners by case id, and why the others are not."""

    runners: dict[str, Runner] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # preparing failed: status error
    unsupported: dict[str, str] = field(default_factory=dict)  # the backend declines: why
    # device, host and decomposed node counts of a case, where lowering changed its graph
    placements: dict[str, dict[str, int]] = field(default_factory=dict)


class Engine(ABC):
    """Prepares cases for one backend and profile, then runs them one by one."""

    @abstractmethod
    def prepare(self, cases: Sequence[Case]) -> Prepared:
        """Runners for what was prepared; errors and declines for the rest."""


def engine_for(backend: Backend, profile: HardwareProfile, fallback: bool = False,
               library: bool = True, tuning_db: str | None = None) -> Engine:
    """`library`: the backend's library dispatch on (as compile does) or off (TVM only);
    `tuning_db`: a tuning database whose records the builds apply."""
    options = CompileOptions(library=library, tuning_db=tuning_db)
    if isinstance(backend, TvmBackend):
        if fallback:
            return FallbackEngine(backend, profile, options)
        return TvmEngine(backend, profile, options)
    if isinstance(backend, OrtBackend):
        return OrtEngine(backend, profile)
    raise PluginError(
        f"backend '{backend.name}' is neither a TvmBackend nor onnxruntime: the suite cannot "
        "run it",
        "derive the plugin's class from xpuport.backends.base.TvmBackend",
    )


class OrtEngine(Engine):
    def __init__(self, backend: OrtBackend, profile: HardwareProfile) -> None:
        self.backend, self.profile = backend, profile

    def prepare(self, cases: Sequence[Case]) -> Prepared:
        prepared = Prepared()
        for case in cases:
            reason = declined(case.onnx_model(), self.backend, self.profile)
            if reason:
                prepared.unsupported[case.case_id] = reason
                continue
            try:
                session = self.backend.session(case.model, self.profile)
            except Exception as exc:  # noqa: BLE001  # onnxruntime raises its own types
                prepared.errors[case.case_id] = error_text(exc)
                continue
            prepared.runners[case.case_id] = _ort_runner(session)
        return prepared


def declined(model: onnx.ModelProto, backend: Backend, profile: HardwareProfile) -> str:
    """Why the backend declines some node of `model`: 'OP: reason'; empty when it takes all."""
    try:
        graph = ir.from_proto(model).graph
    except Exception as exc:  # noqa: BLE001  # onnx_ir rejects exotic models in many ways
        return f"onnx_ir cannot read the model: {exc}"
    for node in graph.all_nodes():
        support = backend.supports(node, profile)
        if not support.supported:
            return f"{node.op_type}: {support.reason}"
    return ""


def _ort_runner(session: Any) -> Runner:
    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = {name: _to_ort(value) for name, value in feeds.items()}
        return [_from_ort(output) for output in session.run_with_ort_values(None, values)]

    return run


# onnxruntime's numpy bridge knows no ml_dtypes (bfloat16, float8, int4): such tensors cross
# it as raw bits with their ONNX type stated.
def _to_ort(value: np.ndarray) -> Any:
    if value.dtype.name in _PACKED:  # ml_dtypes keeps one per byte; onnxruntime packs them
        raise TypeError(f"{value.dtype.name} tensors cannot cross onnxruntime's Python API")
    if value.dtype.kind != "V":
        return ort.OrtValue.ortvalue_from_numpy(np.asarray(value, order="C"))
    bits = np.asarray(value, order="C").view(f"uint{8 * value.dtype.itemsize}")
    elem = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
    return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, elem)


def _from_ort(value: Any) -> np.ndarray:
    name = value.data_type()[len("tensor("):-1]
    dtype = _ML_DTYPES.get(name)
    if dtype is None:
        return np.asarray(value.numpy())
    shape = tuple(value.shape())
    if math.prod(shape) == 0:
        return np.zeros(shape, dtype)
    size = value.tensor_size_in_bytes()
    raw = (ctypes.c_uint8 * size).from_address(value.data_ptr())
    array: np.ndarray = np.frombuffer(raw, np.uint8).copy().view(dtype).reshape(shape)
    return array


_PACKED = frozenset({"int4", "uint4", "int2", "uint2", "float4_e2m1fn"})
_ML_DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16),
              "float8e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
              "float8e5m2": np.dtype(ml_dtypes.float8_e5m2)}


class TvmEngine(Engine):
    """Imports each case, merges them into one IRModule (one function each), builds once."""

    def __init__(self, backend: TvmBackend, profile: HardwareProfile,
                 options: CompileOptions | None = None) -> None:
        self.backend, self.profile = backend, profile
        self.options = options or CompileOptions()

    def prepare(self, cases: Sequence[Case]) -> Prepared:
        imported: dict[str, tuple[Any, list[str]]] = {}
        prepared = Prepared()
        for case in cases:
            try:
                model = self._decomposed(case, prepared)
                if model is None:
                    continue
                module = to_relax(model)
            except Exception as exc:  # noqa: BLE001  # any failure is this case's error
                prepared.errors[case.case_id] = error_text(exc)
                continue
            names = [i.name for i in model.graph.input]
            if len(module.functions) == 1:
                imported[case.case_id] = (module["main"], names)
            else:  # main calls TIR functions of its module: it is built on its own
                prepared.runners.update(self._build({case.case_id: (module, names)},
                                                    prepared.errors))
        prepared.runners.update(self._build(imported, prepared.errors))
        return prepared

    def _decomposed(self, case: Case, prepared: Prepared) -> onnx.ModelProto | None:
        """The case's graph as `compile` lowers a model (canonical, declined nodes decomposed
        where that makes them run here), or None (recorded) when the backend declines it."""
        model = canonicalize(case.onnx_model())
        if all(node.op_type == "Constant" for node in model.graph.node):
            prepared.unsupported[case.case_id] = (
                "the graph folds to constants at compile time: nothing runs on the backend")
            return None
        model, done = decompose(model, self.backend, self.profile)
        reason = declined(model, self.backend, self.profile)
        if reason:
            prepared.unsupported[case.case_id] = reason
            return None
        if done:
            prepared.placements[case.case_id] = {"device": len(model.graph.node), "host": 0,
                                                 "decomposed": len(done)}
        return model

    def _build(
        self, imported: dict[str, tuple[Any, list[str]]], errors: dict[str, str]
    ) -> dict[str, Runner]:
        """Build all at once; when that fails, halve the batch until each failure is one case."""
        if not imported:
            return {}
        merged, symbols = self._merge(imported)
        try:
            executable = lower(merged, self.backend, self.profile, self.options)
        except Exception as exc:  # noqa: BLE001  # TVM raises anything from its passes
            if len(imported) == 1:
                errors[next(iter(imported))] = error_text(exc)
                return {}
            items = list(imported.items())
            half = len(items) // 2
            return {**self._build(dict(items[:half]), errors),
                    **self._build(dict(items[half:]), errors)}
        self.backend.prepare_runtime()
        vm = relax.VirtualMachine(executable, self.backend.device())
        return {case_id: self._runner(vm, symbols[case_id], names)
                for case_id, (_, names) in imported.items()}

    @staticmethod
    def _merge(imported: dict[str, tuple[Any, list[str]]]) -> tuple[Any, dict[str, str]]:
        """One IRModule with a function per case; a whole module stands alone as `main`."""
        first = next(iter(imported.values()))[0]
        if isinstance(first, tvm.IRModule):
            return first, {case_id: "main" for case_id in imported}
        merged, symbols = tvm.IRModule(), {}
        for index, (case_id, (function, _)) in enumerate(imported.items()):
            symbols[case_id] = f"case_{index}"
            merged[symbols[case_id]] = function.with_attr("global_symbol", symbols[case_id])
        return merged, symbols

    def _runner(self, vm: Any, symbol: str, names: list[str]) -> Runner:
        device = self.backend.device()

        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            # asarray keeps a 0-d input 0-d (ascontiguousarray makes it 1-d)
            args = [tvm.runtime.tensor(np.asarray(feeds[n], order="C"), device) for n in names]
            return list(flatten_outputs(vm[symbol](*args)))

        return run


class FallbackEngine(Engine):
    """Each case through `xpuport.compile`, into a scratch artifact: the lowering a user's
    model gets, host regions included (slower: no batching)."""

    def __init__(self, backend: TvmBackend, profile: HardwareProfile,
                 options: CompileOptions) -> None:
        self.backend, self.profile, self.options = backend, profile, options
        self.scratch = Path(tempfile.mkdtemp(prefix="xpuport-conform-"))
        # removed when the worker ends normally; a killed worker leaves it to the OS's /tmp
        weakref.finalize(self, shutil.rmtree, self.scratch, ignore_errors=True)
        self.count = 0

    def prepare(self, cases: Sequence[Case]) -> Prepared:
        from xpuport.api import compile as compile_model

        prepared = Prepared()
        for case in cases:
            self.count += 1
            path = self.scratch / f"case-{self.count}.onnx"
            path.write_bytes(case.model)
            try:
                artifact = compile_model(
                    path, self.backend.name, self.profile.name,
                    self.scratch / f"case-{self.count}", use_cache=False,
                    options=replace(self.options, tuning_db=None),
                    tuning=Path(self.options.tuning_db) if self.options.tuning_db else False)
            except Exception as exc:  # noqa: BLE001  # any failure is this case's error
                prepared.errors[case.case_id] = error_text(exc)
                continue
            placement = json.loads((artifact.path / PLACEMENT).read_text())
            counts = {place: sum(n["place"] == place for n in placement["nodes"])
                      for place in ("device", "host")}
            counts["decomposed"] = len(placement["decomposed"])
            if counts["device"] == 0:
                first = placement["nodes"][0] if placement["nodes"] else {"op": "", "reason": ""}
                prepared.unsupported[case.case_id] = (
                    f"no node runs on the device ({first['op']}: {first['reason']})")
                continue
            prepared.placements[case.case_id] = counts
            prepared.runners[case.case_id] = _artifact_runner(artifact)
        return prepared


def _artifact_runner(artifact: Any) -> Runner:
    names = [spec.name for spec in artifact.outputs]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = artifact.run(feeds)
        return [outputs[name] for name in names]

    return run
