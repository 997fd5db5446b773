"""test_conformance."""
