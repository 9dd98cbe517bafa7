"""augbench: a benchmark and evaluation harness for image data augmentation.

The installed distribution has one import name, ``augbench`` (DESIGN.md, "Layout"): the checkout's
``benchmark/`` folder is the package ``augbench`` and ``methods/`` is ``augbench.methods``
(``pyproject.toml``, ``[tool.setuptools.package-dir]``), so a user's own ``methods/`` folder or
``benchmark.py`` never shadows ours. Built-in methods register through the ``augbench.methods``
entry-point group exactly like third-party plugins. See ``../shared/DESIGN.md`` for the architecture.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # one version string: the distribution's (pyproject.toml), never a second literal here
    __version__ = version("augbench")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
