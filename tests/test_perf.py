"""``nox -s perf``'s summary table and the CUDA section's behaviour without a GPU (timings are never asserted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

# tools/ is not part of the installed package (DESIGN.md, "Layout"): load the script by its path
_PERF = Path(__file__).resolve().parent.parent / "tools" / "perf.py"
_spec = importlib.util.spec_from_file_location("augbench_tools_perf", _PERF)
perf = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = perf
_spec.loader.exec_module(perf)


def test_summary_table_has_one_row_per_section_with_targets():
    results = [{"section": "generation", "speedup_naive_over_harness": 3.1},
               {"section": "noisecutmix_step", "ratio_noisecutmix_over_cfg": 1.42},
               {"section": "process_pool", "speedup_pool_over_serial": 1.6},
               {"section": "sd15_unet", "skipped": "no CUDA device"}]
    lines = perf.summary_table(results).splitlines()
    assert lines[0] == "| section | compares | value | target |" and len(lines) == 2 + len(results)
    assert lines[2].endswith("| 3.1 | ≥ 4.0 |") and lines[3].endswith("| 1.42 | ≤ 1.6 |")
    assert "no CUDA device" in lines[5]
    assert set(perf.HEADLINES) == set(perf.SECTIONS)


def test_sd15_unet_section_skips_without_cuda_and_uses_the_sd15_architecture():
    if not torch.cuda.is_available():
        assert "skipped" in perf.sd15_unet_throughput()
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**{**perf.SD15_UNET_CONFIG, "block_out_channels": (32, 32, 64, 64),
                                   "cross_attention_dim": 16, "attention_head_dim": 2, "norm_num_groups": 8})
    assert [type(b).__name__ for b in unet.down_blocks] == list(perf.SD15_UNET_CONFIG["down_block_types"])
