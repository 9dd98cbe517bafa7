"""augbench.reporting."""
