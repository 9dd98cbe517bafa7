"""augbench.cli."""
