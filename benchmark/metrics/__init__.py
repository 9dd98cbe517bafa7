"""augbench.metrics."""
