"""Built-in augmentation methods, one module per family (DESIGN.md, "Layout").

Methods are discovered through the ``augbench.methods`` entry-point group (see ``pyproject.toml``),
exactly like third-party plugins; nothing here is imported until a method is used. No method module
imports another; shared machinery lives in the harness (``augbench.contract``,
``augbench.diffusion.pipelines``).
"""
