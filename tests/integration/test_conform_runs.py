"""Conformance runs end to end: crashing and hanging kernels, SIGKILL and --resume, the CLI."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import xpuport
from xpuport.api import resolve_profile
from xpuport.backends import registry
from xpuport.conformance.conform import ConformRequest, conform, suite_cases
from xpuport.conformance.results import RESULTS_FILE, read_results
from xpuport.conformance.runner import RunOptions
from xpuport.hw_profiles.profile import PROFILE_PATH_ENV

# A plugin package installed as a dist-info folder, so spawned workers find it too. Its
# sessions crash (SIGSEGV) on one case, hang on another, and may sleep before each run.
PLUGIN = '''
import os, signal, time
from xpuport.backends.ort import OrtBackend

class _Session:
    def __init__(self, inner, name):
        self.inner, self.name = inner, name

    def run_with_ort_values(self, outputs, feeds):
        time.sleep(float(os.environ.get("CRASHY_DELAY", "0")))
        if self.name == os.environ.get("CRASHY_SEGV"):
            os.kill(os.getpid(), signal.SIGSEGV)
        if self.name == os.environ.get("CRASHY_HANG"):
            time.sleep(3600)
        return self.inner.run_with_ort_values(outputs, feeds)

class CrashyBackend(OrtBackend):
    name = "crashy"

    def default_profile(self):
        return "test/crashy"

    def session(self, model, profile):
        import onnx
        return _Session(super().session(model, profile), onnx.load_from_string(model).graph.name)
'''
PROFILE = '''
vendor = "test"
device = "a backend that crashes on purpose"
backend = "crashy"
status = "simulated"
arch = "host"
dtypes = ["float32", "int64", "bool"]

[target]
kind = "onnxruntime"

[sources]
arch = "https://onnxruntime.ai"
'''


@pytest.fixture
def crashy(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "crashy_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "crashy_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: crashy-plugin\nVersion: 1.0\n")
    (site / "crashy_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[xpuport.backends]\ncrashy = crashy_plugin:CrashyBackend\n")
    (site / "crashy_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (tmp_path / "profiles" / "test").mkdir(parents=True)
    (tmp_path / "profiles" / "test" / "crashy.toml").write_text(PROFILE)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *sys.path]))
    monkeypatch.setenv(PROFILE_PATH_ENV, str(tmp_path / "profiles"))
    registry.discover.cache_clear()
    yield registry.get_backend("crashy")
    registry.discover.cache_clear()


def _run(backend, out, ops, timeout=120.0):
    profile = resolve_profile(backend, None)
    request = ConformRequest(backend.name, out, profile.name, "ops", ops, ("float32",),
                             options=RunOptions(jobs=2, timeout=timeout, batch_size=4))
    return {r.case: r for r in conform(request, backend, profile)}


def test_a_crashing_and_a_hanging_kernel_cost_one_case_each(crashy, tmp_path, monkeypatch):
    monkeypatch.setenv("CRASHY_SEGV", "Sqrt.float32.tensor")
    monkeypatch.setenv("CRASHY_HANG", "Add.float32.same_shape")
    ops = ("Add", "Sqrt")
    results = _run(crashy, tmp_path / "run", ops, timeout=8.0)
    assert results["Sqrt.float32.tensor"].status == "crash"
    assert "SIGSEGV" in results["Sqrt.float32.tensor"].message
    assert results["Add.float32.same_shape"].status == "timeout"
    others = {c: r.status for c, r in results.items()
              if c not in ("Sqrt.float32.tensor", "Add.float32.same_shape")}
    assert others and set(others.values()) == {"pass"}, others
    expected = {case.case_id for case in suite_cases("ops", ops, ("float32",))}
    assert set(results) == expected


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from xpuport.cli import main; main()", *args]


def _case_ids(out: Path) -> list[str]:
    lines = (out / RESULTS_FILE).read_text().splitlines()
    return [json.loads(line)["case"] for line in lines if line.endswith("}")]


def test_sigkill_then_resume_finishes_without_repeating_a_case(crashy, tmp_path, monkeypatch):
    monkeypatch.setenv("CRASHY_DELAY", "0.3")
    out = tmp_path / "run"
    args = ["conform", "--backend", "crashy", "--ops", "Add,Sqrt,Exp", "--dtypes", "float32",
            "--out", str(out), "-j", "1"]
    first = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        if (out / RESULTS_FILE).exists() and len(_case_ids(out)) >= 4:
            break
        time.sleep(0.1)
    assert first.poll() is None, f"the run ended before it could be killed: {first.stderr}"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    done_before = _case_ids(out)
    expected = {c.case_id for c in suite_cases("ops", ("Add", "Sqrt", "Exp"), ("float32",))}
    assert 4 <= len(done_before) < len(expected)

    monkeypatch.setenv("CRASHY_DELAY", "0")
    second = subprocess.run(_cli(*args, "--resume"), capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    ids = _case_ids(out)
    repeated = [case for case, n in collections.Counter(ids).items() if n > 1]
    assert not repeated
    assert set(ids) == expected
    assert ids[: len(done_before)] == done_before
    assert {r.status for r in read_results(out / RESULTS_FILE)} == {"pass"}
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).is_file()


def test_a_second_run_into_the_same_folder_is_refused(crashy, tmp_path):
    out = tmp_path / "run"
    _run(crashy, out, ("Sqrt",))
    result = subprocess.run(
        _cli("conform", "--backend", "crashy", "--ops", "Sqrt", "--out", str(out)),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--resume" in result.stderr


def test_resume_refuses_another_backend(crashy, tmp_path):
    out = tmp_path / "run"
    _run(crashy, out, ("Sqrt",))
    result = subprocess.run(
        _cli("conform", "--backend", "ort", "--ops", "Sqrt", "--out", str(out), "--resume"),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "backend 'crashy'" in result.stderr


def test_the_pytest_plugin_runs_the_suite_for_a_backend(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "xpuport.conformance", "-q",
         "-p", "no:cacheprovider", "--xpuport-backend=ort", "--xpuport-ops=Add,Relu",
         "--xpuport-dtypes=float32,int64", f"--xpuport-out={out}", "-rs"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = suite_cases("ops", ("Add", "Relu"), ("float32", "int64"))
    declined = [c for c in expected if c.op == "Relu" and c.dtype == "int64"]
    assert declined
    assert f"{len(expected) - len(declined)} passed, {len(declined)} skipped" in result.stdout
    assert "unsupported: Relu" in result.stdout  # onnxruntime has no int64 Relu kernel
    assert (out / "report.html").is_file()


def test_the_pytest_plugin_without_a_backend_skips_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "xpuport.conformance", "-q", "-rs",
         "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pass --xpuport-backend=NAME" in result.stdout


def test_report_diff_exits_1_on_a_regression(crashy, tmp_path, monkeypatch):
    old, new = tmp_path / "old", tmp_path / "new"
    _run(crashy, old, ("Sqrt",))
    monkeypatch.setenv("CRASHY_SEGV", "Sqrt.float32.tensor")
    _run(crashy, new, ("Sqrt",))
    result = subprocess.run(_cli("report", "diff", str(old), str(new)), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Sqrt.float32.tensor" in result.stdout
    same = subprocess.run(_cli("report", "diff", str(old), str(old)), capture_output=True,
                          text=True, timeout=120)
    assert same.returncode == 0, same.stdout + same.stderr


def test_the_api_runs_a_suite_and_returns_the_summary(tmp_path):
    import xpuport

    summary = xpuport.conform("ort", tmp_path / "run", ops=["Sqrt"], dtypes=["float32"])
    assert summary["counts"]["pass"] == len(suite_cases("ops", ("Sqrt",), ("float32",)))
    assert summary["green"]


def test_an_unknown_op_is_named_with_the_fix(tmp_path):
    result = subprocess.run(_cli("conform", "--backend", "ort", "--ops", "Add,NoSuchOp",
                                 "--out", str(tmp_path / "run")),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "NoSuchOp" in result.stderr and "--list" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_list_shows_the_ops_and_their_dtypes():
    result = subprocess.run(_cli("conform", "--backend", "ort", "--list", "--ops", "MatMul",
                                 "--json"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"MatMul"}
    assert "bfloat16" in json.loads(result.stdout)["MatMul"]


@pytest.mark.parametrize("library", [True, False], ids=["library", "tvm-only"])
def test_matmul_and_conv_pass_with_and_without_library_dispatch(tmp_path, library):
    summary = xpuport.conform("cpu", tmp_path / "run", ops=["MatMul", "Gemm", "Conv"],
                              dtypes=["float32"], library=library)
    assert summary["counts"]["pass"] >= 10
    assert summary["failures"] == []
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["library"] is library


@pytest.fixture(scope="module")
def softmax_records(tmp_path_factory):
    """A tuning database made from the suite's first float32 Softmax case, its records
    marked faster than the default schedules so that every build applies them."""
    from xpuport.lowering.tuning_baseline import BASELINES, read_baselines

    folder = tmp_path_factory.mktemp("tuned")
    case = next(iter(suite_cases("ops", ("Softmax",), ("float32",))))
    (folder / "softmax.onnx").write_bytes(case.model)
    xpuport.tune(folder / "softmax.onnx", "cpu", trials=2, database=folder / "db")
    baselines = {key: 1e6 for key in read_baselines(folder / "db")}
    (folder / "db" / BASELINES).write_text(json.dumps(baselines))
    return case, folder / "db"


def test_conform_applies_a_tuning_database_and_stays_within_tolerance(softmax_records,
                                                                      tmp_path):
    from xpuport.conformance.engines import engine_for
    from xpuport.lowering.tuning import collecting_tuned_kernels

    case, database = softmax_records
    backend = registry.get_backend("cpu")
    engine = engine_for(backend, resolve_profile(backend, None), tuning_db=str(database))
    with collecting_tuned_kernels() as tuned:
        engine.prepare([case])
    assert tuned  # the batched build applied the records
    summary = xpuport.conform("cpu", tmp_path / "run", ops=["Softmax"], dtypes=["float32"],
                              tuning_db=database)
    assert summary["counts"]["pass"] >= 1 and summary["failures"] == []
    assert json.loads((tmp_path / "run" / "run.json").read_text())["tuning_db"] == str(database)


def test_conform_refuses_a_folder_without_a_tuning_database(tmp_path):
    with pytest.raises(xpuport.errors.TuningError, match="no tuning database there"):
        xpuport.conform("cpu", tmp_path / "run", ops=["Softmax"], tuning_db=tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("backend", ["cuda", "rocm"])
def test_conform_refuses_a_backend_whose_device_is_absent(backend, tmp_path):
    if registry.get_backend(backend).is_available():
        pytest.skip(f"a {backend} device is present")
    with pytest.raises(xpuport.errors.DeviceUnavailableError, match="has no device") as raised:
        xpuport.conform(backend, tmp_path / "run", ops=["Relu"])
    assert f"xpuport compile --backend {backend}" in raised.value.fix
    assert not (tmp_path / "run").exists()
