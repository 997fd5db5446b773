"""Accelerators described as data: one TOML file per device, named by its path here."""

from xpuport.hw_profiles.profile import HardwareProfile, list_profiles, load_profile

__all__ = ["HardwareProfile", "list_profiles", "load_profile"]
