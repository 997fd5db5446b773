"""lowering/tuning.py and `xpuport.tune`: records made, applied by compile, refused elsewhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

import xpuport
from xpuport.backends.cpu import CpuBackend
from xpuport.cli import app
from xpuport.errors import TuningError
from xpuport.hw_profiles import load_profile
from xpuport.lowering.tuning import META, create_database, open_database
from xpuport.lowering.tuning_baseline import BASELINES, read_baselines

PROFILE = "generic/x86-64"


@pytest.fixture(scope="module")
def add_relu(tmp_path_factory) -> str:
    """One fused kernel: quick to tune."""
    nodes = [helper.make_node("Add", ["x", "y"], ["s"]), helper.make_node("Relu", ["s"], ["z"])]
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [64, 256]) for n in "xyz"]
    graph = helper.make_graph(nodes, "add_relu", value[:2], value[2:])
    path = tmp_path_factory.mktemp("tune") / "add_relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return str(path)


@pytest.fixture(scope="module")
def tuned_db(add_relu, tmp_path_factory):
    folder = tmp_path_factory.mktemp("db") / "x86"
    result = xpuport.tune(add_relu, "cpu", PROFILE, trials=4, database=folder)
    # an elementwise kernel gets one candidate: the result says so, and the search ends there
    assert (result.tasks, result.trials, result.out_of_budget) == (1, 1, False)
    assert open_database(folder, load_profile(PROFILE), _target()).records() == 1
    baselines = read_baselines(folder)  # the default schedules, measured by tune as well
    assert len(baselines) == 1 and 0 < next(iter(baselines.values())).seconds < 1
    _set_baselines(folder, 1e6)  # as if far slower than the record, so that it applies
    return folder


def _set_baselines(folder, seconds, schedule=None):
    """Every baseline's time set to `seconds`; its schedule's hash kept, or `schedule`."""
    baselines = {key: {"seconds": seconds, "schedule": schedule or baseline.schedule}
                 for key, baseline in read_baselines(folder).items()}
    (folder / BASELINES).write_text(json.dumps(baselines))


def _copy(database, folder):
    """The database's files, without MetaSchedule's logs folder."""
    return shutil.copytree(database, folder, ignore=shutil.ignore_patterns("logs"))


def _target():
    return CpuBackend().target(load_profile(PROFILE))


def test_tune_writes_records_that_compile_applies(add_relu, tuned_db, tmp_path):
    assert (tuned_db / "database_tuning_record.json").read_text().strip()
    artifact = xpuport.compile(add_relu, "cpu", PROFILE, tmp_path / "out", tuning=tuned_db)
    tuning = artifact.manifest["tuning"]
    assert tuning["tuned_kernels"] == ["fused_add_relu"]
    x, y = np.full((64, 256), -1.0, np.float32), np.arange(64 * 256, dtype=np.float32)
    np.testing.assert_array_equal(artifact.run({"x": x, "y": y.reshape(64, 256)})["z"],
                                  np.maximum(y.reshape(64, 256) - 1, 0))


def test_only_kernels_with_records_are_listed_as_tuned(add_relu, tuned_db, tmp_path):
    """Kernels without a record get the default schedules, and are not listed as tuned."""
    model = onnx.load(add_relu)
    model.graph.node.append(helper.make_node("Sigmoid", ["z"], ["w"]))
    model.graph.output[0].name = "w"
    onnx.save(model, tmp_path / "add_relu_sigmoid.onnx")
    artifact = xpuport.compile(tmp_path / "add_relu_sigmoid.onnx", "cpu", PROFILE,
                               tmp_path / "out", tuning=tuned_db)

    # add, ReLU and sigmoid fuse into one kernel, a workload the database has no record for
    assert artifact.manifest["tuning"]["tuned_kernels"] == []


def test_records_change_the_artifact_identity(add_relu, tuned_db):
    plain = xpuport.compile(add_relu, "cpu", PROFILE, tuning=False)
    tuned = xpuport.compile(add_relu, "cpu", PROFILE, tuning=tuned_db)
    assert plain.path != tuned.path and plain.manifest["tuning"] is None


def test_the_profile_default_database_is_applied_when_present(add_relu, tuned_db, monkeypatch,
                                                              tmp_path):
    monkeypatch.setenv("XPUPORT_TUNING_DIR", str(tmp_path))
    (tmp_path / "generic").mkdir()
    (tmp_path / "generic" / "x86-64").symlink_to(tuned_db, target_is_directory=True)
    artifact = xpuport.compile(add_relu, "cpu", PROFILE)
    assert artifact.manifest["tuning"]["tuned_kernels"] == ["fused_add_relu"]


@pytest.mark.parametrize(("key", "value", "named"), [
    ("profile", "nvidia/h100", "nvidia/h100"), ("tvm", "0.19.0", "TVM 0.19.0"),
    ("format", 1, "older xpuport")])
def test_a_database_of_another_profile_or_tvm_is_refused(tmp_path, key, value, named):
    create_database(tmp_path, load_profile(PROFILE), _target())
    meta = json.loads((tmp_path / META).read_text())
    (tmp_path / META).write_text(json.dumps({**meta, key: value}))
    with pytest.raises(TuningError, match=named) as raised:
        open_database(tmp_path, load_profile(PROFILE), _target())
    assert "xpuport tune" in raised.value.fix


def test_a_named_folder_without_records_is_an_error(add_relu, tmp_path):
    with pytest.raises(TuningError, match="no tuning database"):
        xpuport.compile(add_relu, "cpu", PROFILE, tuning=tmp_path)


def test_tune_refuses_a_folder_that_is_not_a_database(add_relu, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TuningError, match="not a tuning database"):
        xpuport.tune(add_relu, "cpu", PROFILE, trials=1, database=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _with_a_broken_record(tuned_db, folder):
    """A copy of `tuned_db` whose record finds its block by a name the kernel lacks."""
    folder.mkdir(parents=True)
    for file in tuned_db.iterdir():
        if file.is_file():
            (folder / file.name).write_text(file.read_text())
    records = folder / "database_tuning_record.json"
    records.write_text(records.read_text().replace('"b0"', '"no_such_block"'))
    return folder


def test_a_record_that_no_longer_applies_is_refused_by_line(add_relu, tuned_db, tmp_path):
    """MetaSchedule reads none of a database once one record fails on its kernel: compile
    names the file and the line instead of failing inside TVM's build."""
    broken = _with_a_broken_record(tuned_db, tmp_path / "broken")
    with pytest.raises(TuningError, match=r"database_tuning_record.json: records on lines 1 "):
        xpuport.compile(add_relu, "cpu", PROFILE, tmp_path / "out", tuning=broken)
    assert not (tmp_path / "out").exists()


def test_compile_reads_only_the_records_of_its_own_kernels(add_relu, tuned_db, tmp_path):
    """Records are matched by kernel hash before any is parsed: one that would not load,
    made for a kernel this model does not have, is never read."""
    broken = _with_a_broken_record(tuned_db, tmp_path / "broken")
    model = onnx.load(add_relu)
    model.graph.node[1].op_type = "Sigmoid"  # add, sigmoid: another kernel
    onnx.save(model, tmp_path / "add_sigmoid.onnx")
    artifact = xpuport.compile(tmp_path / "add_sigmoid.onnx", "cpu", PROFILE, tmp_path / "out",
                               tuning=broken)
    assert artifact.manifest["tuning"]["tuned_kernels"] == []


def test_a_record_slower_than_the_default_schedules_is_not_applied(add_relu, tuned_db, tmp_path):
    copy = _copy(tuned_db, tmp_path / "db")
    _set_baselines(copy, 0.0)  # the default schedules measured faster than every record
    artifact = xpuport.compile(add_relu, "cpu", PROFILE, tmp_path / "out", tuning=copy)
    assert artifact.manifest["tuning"]["tuned_kernels"] == []


def test_a_record_measured_against_another_default_schedule_is_named_and_not_applied(
        add_relu, tuned_db, tmp_path):
    """A baseline holds for the default schedule it timed: where compile's default schedule
    is no longer that one (a newer xpuport), the record may be the slower of the two."""
    copy = _copy(tuned_db, tmp_path / "db")
    _set_baselines(copy, 1e6, schedule="1234")  # far slower, but another schedule's time
    artifact = xpuport.compile(add_relu, "cpu", PROFILE, tmp_path / "out", tuning=copy)

    tuning = artifact.manifest["tuning"]
    assert (tuning["tuned_kernels"], tuning["stale_kernels"]) == ([], ["fused_add_relu"])
    said = CliRunner().invoke(app, ["compile", add_relu, "--profile", PROFILE, "-o",
                                    str(tmp_path / "cli"), "--tuning-db", str(copy)]).output
    assert "1 kernel(s) not tuned" in said and "fused_add_relu" in said


def test_tune_keeps_the_hash_of_the_default_schedule_it_timed(tuned_db, tmp_path):
    """What compile compares (the fixture's database, tuned by this xpuport, applies)."""
    assert all(baseline.schedule for baseline in read_baselines(tuned_db).values())


def test_tune_keeps_meta_schedules_log_off_stdout(add_relu, tmp_path):
    """Its per-batch tables once made `tune --json` print no valid JSON; the whole log is
    still in the database's logs/ folder."""
    result = CliRunner().invoke(app, ["tune", add_relu, "--profile", PROFILE, "--trials", "2",
                                      "--db", str(tmp_path / "db"), "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trials"] == 1
    assert "task_scheduler" not in result.output
    assert any((tmp_path / "db" / "logs").iterdir())
    said = CliRunner().invoke(app, ["tune", add_relu, "--profile", PROFILE, "--trials", "2",
                                    "--db", str(tmp_path / "db")]).output
    assert said.startswith("1 trials measured") and "[INFO]" not in said  # no terminal
    assert "tuned 1 kernel(s)" in said


def test_bench_applies_a_tuning_database_and_names_the_tuned_kernels(add_relu, tuned_db):
    result = CliRunner().invoke(app, ["bench", add_relu, "--profile", PROFILE, "--tuning-db",
                                      str(tuned_db), "--warmup", "1", "--repeat", "2", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tuned_kernels"] == ["fused_add_relu"]

