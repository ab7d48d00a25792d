"""Graph-to-graph passes over the IR, one per file."""
