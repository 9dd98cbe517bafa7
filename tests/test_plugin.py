"""A third-party plugin package is discovered through its entry points and passes the contract mixins.

The plugin under ``tests/plugin_pkg/`` is "installed" without touching the environment: a temporary
folder gets a ``*.dist-info`` (METADATA + entry_points.txt generated from the plugin's own
``pyproject.toml``) and goes on ``PYTHONPATH`` of a subprocess, together with the plugin's ``src/``.
That is exactly what importlib.metadata sees after ``pip install``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"
ROOT = Path(__file__).resolve().parent.parent


def _install_dist_info(site: Path, pyproject: Path, name: str | None = None, eps: dict | None = None) -> None:
    meta = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name = name or meta["name"]
    eps = eps if eps is not None else meta["entry-points"]["augbench.methods"]
    info = site / f"{name.replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {meta['version']}\n")
    lines = ["[augbench.methods]"] + [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    (info / "top_level.txt").write_text("augbench_plugin_example\n")


def _env(site: Path) -> dict:
    env = dict(os.environ)
    paths = [str(site), str(PLUGIN / "src"), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["HF_HUB_OFFLINE"] = "1"
    return env


LIST = textwrap.dedent(
    """
    import json, sys
    from augbench.registry import Registry
    reg = Registry()
    entries = {e.name: [e.distribution, e.value] for e in reg.entries()}
    loaded = "augbench_plugin_example" in sys.modules
    desc = reg.describe("channel_flip.always")
    comp = reg.create("noise+channel_flip")
    print(json.dumps({"entries": entries, "loaded_by_listing": loaded, "desc": desc, "comp": comp.id}))
    """
)


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    _install_dist_info(site, PLUGIN / "pyproject.toml")
    return site


def test_plugin_is_listed_next_to_builtins(site):
    res = subprocess.run([sys.executable, "-c", LIST], env=_env(site), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert data["entries"]["channel_flip"] == ["augbench-plugin-example", "augbench_plugin_example:ChannelFlip"]
    assert data["entries"]["noise"][0] == "augbench-plugin-example"
    assert data["entries"]["cutmix"][0] == "augbench"  # built-ins come through the same path
    assert not data["loaded_by_listing"]
    assert data["desc"]["distribution"] == "augbench-plugin-example" and data["desc"]["kind"] == "batch"
    assert {p["name"]: p["default"] for p in data["desc"]["params"]}["p"] == 1.0
    assert data["comp"] == "noise+channel_flip"


def test_plugin_passes_the_contract_mixins(site):
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header", str(PLUGIN / "contract_check.py")],
        env=_env(site),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout


def test_duplicate_name_from_a_plugin_names_both_distributions(site):
    _install_dist_info(
        site, PLUGIN / "pyproject.toml", name="augbench-fancy-cutmix", eps={"cutmix": "augbench_plugin_example:ChannelFlip"}
    )
    code = "from augbench.registry import Registry; Registry().names()"
    res = subprocess.run([sys.executable, "-c", code], env=_env(site), capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "DuplicateMethodError" in res.stderr
    assert "'augbench'" in res.stderr and "'augbench-fancy-cutmix'" in res.stderr
