"""The plugin's own contract tests, reusing augbench's mixins (run by tests/test_plugin.py).

Not named ``test_*.py`` so that augbench's test run does not collect it when the plugin is not
installed; the integration test runs it explicitly with the plugin on the path.
"""

from __future__ import annotations

from augbench.contract import MethodContext
from augbench.testing import BatchMethodTesterMixin, OfflineMethodTesterMixin, TinySource, tiny_profile


class TestChannelFlip(BatchMethodTesterMixin):
    method_id = "channel_flip"


class TestChannelFlipAlways(BatchMethodTesterMixin):
    method_id = "channel_flip.always"
    expect_randomness = False  # p = 1: every sample is flipped


class TestNoise(OfflineMethodTesterMixin):
    method_id = "noise"
    atol_uint8 = 0

    def get_context(self, tmp_dir):
        return MethodContext(profile=tiny_profile(tmp_dir / "unused"), source=TinySource(), cache_dir=tmp_dir)
