"""augbench.synthetic."""
