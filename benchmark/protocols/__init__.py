"""augbench.protocols."""
