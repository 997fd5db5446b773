"""From the canonical graph to a built, verified artifact directory."""
