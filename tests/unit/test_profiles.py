"""hw_profiles/profile.py: the schema, its invariants, the search path and `extends`."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from xpuport.errors import ProfileError
from xpuport.hw_profiles import HardwareProfile, list_profiles, load_profile
from xpuport.hw_profiles.profile import PROFILE_PATH_ENV

BASE = """
vendor = "acme"
device = "Acme NPU 1"
backend = "cpu"
status = "simulated"
arch = "acme1"
dtypes = ["float32", "float16"]
"""
TARGET = """
[target]
kind = "llvm"
"""
SOURCES = """
[sources]
arch = "https://acme.example/npu1"
"""


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    root = tmp_path / "profiles"
    root.mkdir()
    monkeypatch.setenv(PROFILE_PATH_ENV, str(root))
    return root


def _write(root, name: str, text: str) -> None:
    path = root / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _assert_refused(name: str, *fragments: str) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(name)
    for fragment in fragments:
        assert fragment in info.value.message
    assert info.value.fix.strip()
    return info.value


def test_builtin_x86_64():
    profile = load_profile("generic/x86-64")

    assert isinstance(profile, HardwareProfile)
    assert profile.name == "generic/x86-64"
    assert profile.vendor == "generic"
    assert profile.backend == "cpu"
    assert profile.status == "runnable"
    assert profile.arch == "x86-64"
    assert profile.target["kind"] == "llvm"
    assert profile.target["mtriple"] == "x86_64-unknown-linux-gnu"
    assert {"float32", "float16", "int8", "bool"} <= set(profile.dtypes)
    assert profile.supports_dtype("float32")
    assert not profile.supports_dtype("float8_e4m3fn")
    # The generic host states no figure, so it needs no source for one.
    assert profile.stated_figures() == ()
    assert profile.memory_gib is None
    assert all(url.startswith("https://") for url in profile.sources.values())


def test_profile_to_json():
    data = load_profile("generic/x86-64").to_json()

    assert data["name"] == "generic/x86-64"
    assert data["target"]["kind"] == "llvm"
    assert data["figures"] == {}
    assert data["extends"] is None
    assert "float32" in data["dtypes"]


def test_list_profiles_includes_builtins():
    names = [profile.name for profile in list_profiles()]

    assert "generic/x86-64" in names
    assert "generic/aarch64" in names


def test_list_profiles_includes_the_search_path(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + TARGET + SOURCES)

    names = [profile.name for profile in list_profiles()]

    assert "acme/npu1" in names
    assert "generic/x86-64" in names


def test_unknown_profile_lists_known_ones():
    with pytest.raises(ProfileError) as info:
        load_profile("nope/nothing")

    assert "nope/nothing" in info.value.message
    assert "generic/x86-64" in info.value.fix
    assert "generic/aarch64" in info.value.fix


def test_profile_from_the_search_path(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + TARGET + SOURCES)

    profile = load_profile("acme/npu1")

    assert profile.name == "acme/npu1"
    assert profile.status == "simulated"
    assert profile.dtypes == ("float32", "float16")
    assert dict(profile.sources) == {"arch": "https://acme.example/npu1"}


def test_profile_by_toml_path(tmp_path):
    path = tmp_path / "acme" / "npu1.toml"
    _write(tmp_path, "acme/npu1", BASE + TARGET + SOURCES)

    profile = load_profile(str(path))

    assert profile.vendor == "acme"
    assert profile.name == path.with_suffix("").as_posix()


def test_figure_without_source_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + "memory_gib = 80\n" + TARGET + SOURCES)

    _assert_refused("acme/npu1", "memory_gib", "source")


def test_figure_with_non_https_source_is_refused(profile_dir):
    sources = SOURCES + 'memory_gib = "http://acme.example/datasheet"\n'
    _write(profile_dir, "acme/npu1", BASE + "memory_gib = 80\n" + TARGET + sources)

    _assert_refused("acme/npu1", "memory_gib")


def test_figure_with_source_loads(profile_dir):
    sources = SOURCES + 'memory_gib = "https://acme.example/datasheet"\n'
    _write(profile_dir, "acme/npu1", BASE + "memory_gib = 80\n" + TARGET + sources)

    profile = load_profile("acme/npu1")

    assert profile.memory_gib == 80
    assert profile.stated_figures() == ("memory_gib",)
    assert profile.to_json()["figures"] == {"memory_gib": 80}


def test_peak_tflops_for_unsupported_dtype_is_refused(profile_dir):
    sources = SOURCES + 'peak_tflops = "https://acme.example/datasheet"\n'
    text = BASE + TARGET + sources + "[peak_tflops]\nint8 = 100.0\n"
    _write(profile_dir, "acme/npu1", text)

    _assert_refused("acme/npu1", "peak_tflops.int8")


def test_matrix_unit_loads(profile_dir):
    sources = SOURCES + 'matrix_unit = "https://acme.example/isa"\n'
    unit = (
        '[matrix_unit]\nshape = [16, 16, 16]\ninput_dtypes = ["float16"]\naccumulator = "float32"\n'
    )
    _write(profile_dir, "acme/npu1", BASE + TARGET + sources + unit)

    profile = load_profile("acme/npu1")

    assert profile.matrix_unit is not None
    assert profile.matrix_unit.shape == (16, 16, 16)
    assert profile.matrix_unit.accumulator == "float32"


def test_bad_status_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE.replace("simulated", "shipping") + TARGET + SOURCES)

    _assert_refused("acme/npu1", "status 'shipping'")


def test_unknown_dtype_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE.replace('"float16"', '"float17"') + TARGET + SOURCES)

    _assert_refused("acme/npu1", "float17")


def test_empty_dtypes_are_refused(profile_dir):
    _write(
        profile_dir,
        "acme/npu1",
        BASE.replace('["float32", "float16"]', "[]") + TARGET + SOURCES,
    )

    _assert_refused("acme/npu1", "dtypes")


def test_missing_required_key_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE.replace('arch = "acme1"\n', "") + TARGET + SOURCES)

    _assert_refused("acme/npu1", "missing keys ['arch']")


def test_unknown_key_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + "tops = 9000\n" + TARGET + SOURCES)

    _assert_refused("acme/npu1", "unknown keys ['tops']")


def test_target_without_kind_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + '[target]\nmcpu = "acme1"\n' + SOURCES)

    _assert_refused("acme/npu1", "kind")


def test_invalid_toml_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + "status = = 3\n")

    _assert_refused("acme/npu1", "not valid TOML")


def test_incomplete_matrix_unit_is_refused(profile_dir):
    text = BASE + TARGET + SOURCES + "[matrix_unit]\nshape = [16, 16, 16]\n"
    _write(profile_dir, "acme/npu1", text)  # matrix_unit lacks input_dtypes/accumulator

    _assert_refused("acme/npu1", "wrong type or shape")


def test_target_given_as_string_is_refused(profile_dir):
    _write(profile_dir, "acme/npu1", BASE + 'target = "llvm"\n' + SOURCES)

    _assert_refused("acme/npu1")


def test_extends_merges_and_overrides(profile_dir):
    parent_sources = SOURCES + 'memory_gib = "https://acme.example/npu1"\n'
    _write(profile_dir, "acme/npu1", BASE + "memory_gib = 32\n" + TARGET + parent_sources)
    child = """
    extends = "acme/npu1"
    device = "Acme NPU 1 Pro"
    memory_gib = 64
    [target]
    mcpu = "acme1-pro"
    [sources]
    device = "https://acme.example/npu1-pro"
    """
    _write(profile_dir, "acme/npu1-pro", child)

    profile = load_profile("acme/npu1-pro")

    assert profile.name == "acme/npu1-pro"
    assert profile.extends == "acme/npu1"
    assert profile.device == "Acme NPU 1 Pro"  # overridden
    assert profile.memory_gib == 64  # overridden
    assert profile.vendor == "acme"  # inherited
    assert profile.dtypes == ("float32", "float16")  # inherited
    assert dict(profile.target) == {"kind": "llvm", "mcpu": "acme1-pro"}  # tables merged
    assert set(profile.sources) == {"arch", "memory_gib", "device"}
    assert load_profile("acme/npu1").memory_gib == 32  # the parent is unchanged


def test_extends_a_builtin(profile_dir):
    _write(profile_dir, "acme/host", 'extends = "generic/x86-64"\ndevice = "Acme host"\n')

    profile = load_profile("acme/host")

    assert profile.device == "Acme host"
    assert profile.arch == "x86-64"
    assert profile.target["mtriple"] == "x86_64-unknown-linux-gnu"


def test_extends_cycle_is_refused(profile_dir):
    _write(profile_dir, "acme/a", 'extends = "acme/b"\n' + BASE + TARGET + SOURCES)
    _write(profile_dir, "acme/b", 'extends = "acme/a"\n')

    _assert_refused("acme/a", "extends itself")


def test_extends_self_is_refused(profile_dir):
    _write(profile_dir, "acme/a", 'extends = "acme/a"\n' + BASE + TARGET + SOURCES)

    _assert_refused("acme/a", "extends itself")


def test_extends_unknown_parent_is_refused(profile_dir):
    _write(profile_dir, "acme/a", 'extends = "acme/missing"\n')

    _assert_refused("acme/a", "acme/missing")


def test_profiles_are_frozen():
    profile = load_profile("generic/x86-64")

    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.memory_gib = 1024  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile.target["kind"] = "cuda"  # type: ignore[index]
    assert profile.target["kind"] == "llvm"


def test_replace_rechecks_invariants():
    profile = load_profile("generic/x86-64")

    narrowed = dataclasses.replace(profile, dtypes=("float32",))
    assert narrowed.dtypes == ("float32",)
    with pytest.raises(ProfileError):
        dataclasses.replace(profile, status="broken")


ACCELERATORS = {
    "nvidia/a100", "nvidia/h100", "amd/mi250x", "amd/mi300x", "huawei/ascend-910b",
    "cambricon/mlu370", "moorethreads/mtt-s4000", "metax/c500", "hygon/dcu-z100",
    "iluvatar/bi-v100", "biren/br100", "kunlunxin/p800", "enflame/t10",
}


def test_the_accelerators_users_port_to_are_described():
    names = {profile.name for profile in list_profiles()}
    assert names >= ACCELERATORS
    assert len(names - {n for n in names if n.startswith(("generic/", "onnxruntime/"))}) >= 12


@pytest.mark.parametrize("name", sorted(ACCELERATORS))
def test_every_accelerator_maps_to_a_backend_and_sources_its_claims(name):
    profile = load_profile(name)
    assert profile.sources["arch"].startswith("https://")
    assert profile.sources["dtypes"].startswith("https://")
    if profile.status == "profile-only":  # no TVM target yet: says which plugin it needs
        assert profile.backend.startswith("plugin:") and "plugin" in profile.notes
    else:
        assert profile.backend in {"cuda", "rocm", "npusim"}
        assert profile.target["kind"] in {"cuda", "rocm", "llvm"}


@pytest.mark.parametrize(("name", "kind", "arch_key", "arch"), [
    ("nvidia/h100", "cuda", "arch", "sm_90"), ("nvidia/a100", "cuda", "arch", "sm_80"),
    ("amd/mi300x", "rocm", "mcpu", "gfx942"), ("amd/mi250x", "rocm", "mcpu", "gfx90a"),
    ("hygon/dcu-z100", "rocm", "mcpu", "gfx906"),
])
def test_gpu_profiles_give_the_target_arch(name, kind, arch_key, arch):
    profile = load_profile(name)
    assert (profile.target["kind"], profile.target[arch_key], profile.arch) == (kind, arch, arch)
