"""Backends: the contract every accelerator implements, the registry, and the built-ins."""
