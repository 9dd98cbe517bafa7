"""augbench.diffusion."""
