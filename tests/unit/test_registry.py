"""backends/registry.py and backends/base.py: discovery, validation, the contract's options."""

from __future__ import annotations

import dataclasses
import inspect
import types
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as real_entry_points

import pytest

from xpuport.backends import registry
from xpuport.backends.base import API_VERSION, Backend, CompileOptions, Support, TvmBackend
from xpuport.backends.cpu import CpuBackend
from xpuport.errors import PluginError, UnknownBackendError, XpuportError

GROUP = registry.ENTRY_POINT_GROUP


class _FakeBackend(Backend):
    name = "fake"

    def default_profile(self):
        return "generic/x86-64"

    def supports(self, node, profile):
        return Support.yes()

    def target(self, profile):
        return None

    def device(self):
        return None

    def is_available(self):
        return True

    def cache_key(self, profile):
        return "fake"


def _concrete(name: str, **attrs) -> type[Backend]:
    return type("FakeBackend", (_FakeBackend,), {"name": name, **attrs})


def _module_with(*class_names: str) -> types.ModuleType:
    module = types.ModuleType("fake_plugin_module")
    for class_name in class_names:
        setattr(
            module, class_name, type(class_name, (_FakeBackend,), {"__module__": module.__name__})
        )
    module.Backend = Backend  # imported names from elsewhere do not count
    return module


@pytest.fixture
def fresh_registry():
    registry.discover.cache_clear()
    yield
    registry.discover.cache_clear()


# --- discovery of the built-in backend -------------------------------------------------------


def test_discover_lists_cpu_as_builtin(fresh_registry):
    entries = {entry.name: entry for entry in registry.discover()}

    cpu = entries["cpu"]
    assert cpu.origin == "builtin"
    assert cpu.error is None
    assert cpu.backend_class is CpuBackend
    assert "xpuport.backends.cpu:CpuBackend" in cpu.source
    assert cpu.available()
    assert cpu.to_json()["available"] is True


def test_get_backend_cpu(fresh_registry):
    backend = registry.get_backend("cpu")

    assert isinstance(backend, CpuBackend)
    assert backend.name == "cpu"


def test_unknown_backend_lists_known_ones(fresh_registry):
    with pytest.raises(UnknownBackendError) as info:
        registry.get_backend("nope")

    assert "'nope'" in info.value.message
    assert "cpu" in info.value.fix


# --- validate ---------------------------------------------------------------------------------


def test_validate_accepts_a_concrete_backend():
    cls = _concrete("fake")

    assert registry.validate("fake", cls) is cls


def test_validate_accepts_the_cpu_backend():
    assert registry.validate("cpu", CpuBackend) is CpuBackend


@pytest.mark.parametrize("loaded", [42, "CpuBackend", CpuBackend(), dict], ids=repr)
def test_validate_rejects_what_is_not_a_backend_class(loaded):
    with pytest.raises(PluginError) as info:
        registry.validate("fake", loaded)

    assert "not a Backend subclass" in info.value.message
    assert info.value.fix


def test_validate_rejects_an_abstract_subclass():
    class Partial(TvmBackend):
        name = "partial"

        def default_profile(self):
            return "generic/x86-64"

        def supports(self, node, profile):
            return Support.yes()

    with pytest.raises(PluginError) as info:
        registry.validate("partial", Partial)

    message = info.value.message
    assert "Partial" in message
    for method in ("cache_key", "device", "is_available", "target"):
        assert method in message
    assert "supports" not in message
    assert "default_profile" not in message


def test_validate_rejects_another_api_version():
    cls = _concrete("fake", api_version=99)

    with pytest.raises(PluginError) as info:
        registry.validate("fake", cls)

    assert "99" in info.value.message
    assert str(API_VERSION) in info.value.message


def test_validate_rejects_a_name_mismatch():
    cls = _concrete("other")

    with pytest.raises(PluginError) as info:
        registry.validate("fake", cls)

    assert "'other'" in info.value.message
    assert "'fake'" in info.value.message


def test_validate_rejects_a_class_without_a_name():
    methods = {k: v for k, v in vars(_FakeBackend).items() if callable(v) and k[0] != "_"}
    cls = type("Nameless", (Backend,), methods)
    assert not inspect.isabstract(cls)

    with pytest.raises(PluginError):
        registry.validate("fake", cls)


def test_validate_rejects_a_module_with_two_backends():
    module = _module_with("FirstBackend", "SecondBackend")

    with pytest.raises(PluginError) as info:
        registry.validate("fake", module)

    assert "2 Backend subclasses" in info.value.message


def test_validate_rejects_a_module_with_no_backend():
    module = _module_with()

    with pytest.raises(PluginError) as info:
        registry.validate("fake", module)

    assert "0 Backend subclasses" in info.value.message


def test_validate_accepts_a_module_with_exactly_one_backend():
    module = _module_with("OnlyBackend")
    module.Imported = CpuBackend  # defined in another module: not counted

    assert registry.validate("fake", module) is module.OnlyBackend


# --- broken plugins are listed, never fatal ---------------------------------------------------

# The plugin module's source is _FakeBackend's own, renamed: one definition of a valid backend.
GOOD_PLUGIN = "from xpuport.backends.base import Backend, Support\n\n\n" + inspect.getsource(
    _FakeBackend
).replace("_FakeBackend", "GoodBackend").replace('"fake"', '"good"')


@pytest.fixture
def plugins(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "xpuport_test_raising_plugin.py").write_text(
        'raise RuntimeError("plugin exploded at import")\n'
    )
    (tmp_path / "xpuport_test_good_plugin.py").write_text(GOOD_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    cpu = next(ep for ep in real_entry_points(group=GROUP) if ep.name == "cpu")
    fakes = [
        EntryPoint(name="broken", value="nonexistent_module_xyz:Backend", group=GROUP),
        EntryPoint(name="raising", value="xpuport_test_raising_plugin:Backend", group=GROUP),
        EntryPoint(name="misnamed", value="xpuport_test_good_plugin:GoodBackend", group=GROUP),
        EntryPoint(name="good", value="xpuport_test_good_plugin", group=GROUP),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: [cpu, *fakes])
    return {entry.name: entry for entry in registry.discover()}


def test_broken_plugins_are_listed_with_their_error(plugins):
    assert set(plugins) == {"broken", "cpu", "good", "misnamed", "raising"}

    broken = plugins["broken"]
    assert broken.backend_class is None
    assert broken.origin == "plugin"
    assert "nonexistent_module_xyz" in broken.error
    assert "ModuleNotFoundError" in broken.error
    assert "nonexistent_module_xyz:Backend" in broken.source

    raising = plugins["raising"]
    assert raising.backend_class is None
    assert raising.origin == "plugin"
    assert "RuntimeError" in raising.error
    assert "plugin exploded at import" in raising.error

    misnamed = plugins["misnamed"]
    assert misnamed.backend_class is None
    assert "'good'" in misnamed.error
    assert "fix:" in misnamed.error


def test_discover_is_sorted_by_name(plugins):
    names = [entry.name for entry in registry.discover()]

    assert names == sorted(names)


def test_broken_plugins_do_not_break_cpu(plugins):
    assert plugins["cpu"].error is None
    assert plugins["cpu"].origin == "builtin"
    assert isinstance(registry.get_backend("cpu"), CpuBackend)


def test_a_good_plugin_module_loads(plugins):
    good = plugins["good"]

    assert good.error is None
    assert good.origin == "plugin"
    assert registry.get_backend("good").name == "good"


def test_broken_plugin_entries_report_unavailable(plugins):
    data = plugins["broken"].to_json()

    assert data["available"] is False
    assert data["error"] == plugins["broken"].error


def test_get_backend_of_a_broken_plugin_says_why(plugins):
    with pytest.raises(UnknownBackendError) as info:
        registry.get_backend("raising")

    assert "failed to load" in info.value.message
    assert "plugin exploded at import" in info.value.message
    assert "xpuport_test_raising_plugin" in info.value.fix


def test_a_raising_availability_probe_means_unavailable():
    def boom(self):
        raise OSError("no driver")

    entry = registry.BackendEntry("fake", "plugin", "x", _concrete("fake", is_available=boom), None)

    assert entry.available() is False


# --- the contract's small types ---------------------------------------------------------------


@pytest.mark.parametrize("level", [-1, 4, 7])
def test_compile_options_refuse_a_bad_opt_level(level):
    with pytest.raises(XpuportError) as info:
        CompileOptions(opt_level=level)

    assert str(level) in info.value.message
    assert info.value.fix


def test_compile_options_defaults_and_json():
    options = CompileOptions(opt_level=0)

    assert options.to_json() == {"opt_level": 0, "inline_functions": False, "library": True,
                               "schedules": True, "fast_math": True, "tuning_db": None}
    assert CompileOptions().opt_level == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.opt_level = 2  # type: ignore[misc]


def test_support():
    assert Support.yes() == Support(True, "")
    no = Support.no("dtype float16")
    assert not no.supported
    assert no.reason == "dtype float16"


def test_a_plugin_reusing_a_name_shadows_nothing(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "xpuport_test_impostor.py").write_text(GOOD_PLUGIN.replace('"good"', '"cpu"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    cpu = next(ep for ep in real_entry_points(group=GROUP) if ep.name == "cpu")
    impostor = EntryPoint(name="cpu", value="xpuport_test_impostor:GoodBackend", group=GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [cpu, impostor])
    entries = registry.discover()
    assert len(entries) == 2
    assert all(e.backend_class is None and "registered by" in e.error for e in entries)
    with pytest.raises(UnknownBackendError, match="registered by"):
        registry.get_backend("cpu")
