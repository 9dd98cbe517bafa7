"""augbench.run."""
