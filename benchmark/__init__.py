"""augbench: a benchmark and evaluation harness for image data augmentation.

The harness lives in this package (import name ``benchmark``); built-in methods live in the
sibling package ``methods`` and register through the ``augbench.methods`` entry-point group.
See ``../shared/DESIGN.md`` for the architecture.
"""

__version__ = "0.1.0"
