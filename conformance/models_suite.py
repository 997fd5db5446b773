"""models_suite."""
