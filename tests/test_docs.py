"""The documentation stays true: the generated methods page matches the registry, every relative link
resolves, and the README stays a quick start (issue 22 item 8)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from augbench.reporting import method_docs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 200
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
DOTTED = re.compile(r"\baugbench(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"^\s*from (augbench[\w.]*) import ([\w, ]+)$", re.MULTILINE)
# the checkout folders the import names map to (pyproject.toml, [tool.setuptools.package-dir])
PACKAGE_DIRS = {"augbench": ROOT / "benchmark", "augbench.methods": ROOT / "methods"}


def test_methods_page_is_current():
    committed = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    assert committed == method_docs.render_methods_page(), (
        "docs/methods.md is stale: regenerate it with `python -m augbench.reporting.method_docs`")


def test_check_runs_without_diffusers():
    """``--check`` on the committed page exits 0, and describing every method imports no diffusers."""
    code = textwrap.dedent("""
        import sys
        from augbench.reporting.method_docs import main
        status = main(["--check"])
        sys.exit(status if status else 3 * ("diffusers" in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        "diffusers was imported while rendering the methods page" if done.returncode == 3 else done.stderr)


def test_check_flags_a_stale_page_in_one_line(tmp_path, capsys):
    page = tmp_path / "methods.md"
    assert method_docs.main(["--check", "--output", str(page)]) == 1  # missing
    assert method_docs.main(["--output", str(page)]) == 0
    assert method_docs.main(["--check", "--output", str(page)]) == 0
    page.write_text(page.read_text(encoding="utf-8") + "A hand edit the registry does not know.\n", encoding="utf-8")
    capsys.readouterr()
    assert method_docs.main(["--check", "--output", str(page)]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "is stale" in message and "method_docs" in message


class _FakeRegistry:
    """Two families shaped like ``Registry.describe``: one built-in, one from a plugin distribution."""

    DESCRIPTIONS = {
        "blend": {
            "id": "blend", "kind": "offline", "distribution": "augbench", "class": "augbench.methods.blend:Blend",
            "summary": "Blend: a photo of a <class_b> mixed in",
            "params": [
                {"name": "strength", "default": 0.7, "help": "img2img strength | s", "paper": "DM 0.8 [§3.7]",
                 "code": "0.5", "choices": None},
                {"name": "scheduler", "default": "ddim", "help": "", "paper": None, "choices": ["ddim", "pndm"]},
            ],
            "presets": ["strong"],
            "preset_values": {"strong": {"strength": 0.9}},
            "card": {"changes": "adds images", "labels": "soft: lam*y_a + (1-lam)*y_b", "cost": "one pass",
                     "references": ["METHODS_SPEC §3.7"],
                     "training": {"replacement_mode": "same_class", "replacement_p": 0.5, "labels": "hard",
                                  "label_gamma": 0.8, "label_sigma": 1.0}},
        },
        "plugin_flip": {
            "id": "plugin_flip", "kind": "batch", "distribution": "someone-else", "summary": "flip",
            "params": [], "presets": [], "preset_values": {}, "card": {},
        },
    }

    def names(self):
        return list(self.DESCRIPTIONS)

    def describe(self, method_id):
        return self.DESCRIPTIONS[method_id]


def test_page_renders_cards_parameters_and_presets_as_valid_tables():
    page = method_docs.render_methods_page(_FakeRegistry())
    assert "## `plugin_flip`" not in page  # plugins installed beside augbench stay off the committed page
    assert "## `plugin_flip`" in method_docs.render_methods_page(_FakeRegistry(), distribution=None)
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| `")}
    assert rows["| `strength`"] == "| `strength` | `0.7` | DM 0.8 [§3.7]; code: 0.5 | — | img2img strength \\| s |"
    assert rows["| `scheduler`"] == '| `scheduler` | `"ddim"` | — | `"ddim"`, `"pndm"` | — |'
    assert rows["| `blend.strong`"] == "| `blend.strong` | `strength` = `0.9` |"
    assert "a photo of a &lt;class_b&gt;" in page and "lam\\*y_a + (1-lam)\\*y_b" in page
    # gamma and sigma belong to the diff_mix label rule only
    assert "`replacement_mode` = `\"same_class\"`, `replacement_p` = `0.5`, `labels` = `\"hard\"`\n" in page
    assert not _ragged_tables(page)


def _ragged_tables(text: str) -> list[str]:
    """Markdown tables (outside code blocks) whose rows do not all have the same number of cells."""
    tables = re.findall(r"(?:^\|.*\|\n)+", FENCE.sub("", text), re.MULTILINE)
    return [t for t in tables if len({len(re.split(r"(?<!\\)\|", line)) for line in t.splitlines()}) != 1]


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_tables_have_one_width(path):
    assert not _ragged_tables(path.read_text(encoding="utf-8")), f"{path.relative_to(ROOT)} has a ragged table"


def test_ragged_table_finder_counts_escaped_pipes_as_text():
    ragged = "| a | b |\n|---|---|\n| x \\| y | z |\n| only one |\n"
    assert _ragged_tables(ragged) == [ragged]
    assert not _ragged_tables("| a | b |\n|---|---|\n| x \\| y | z |\n```\n| in code |\n```\n")


def _relative_links(path: Path) -> list[tuple[str, str]]:
    """``(file, fragment)`` of every relative link outside code blocks (``file`` empty: this page)."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    targets = [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return [tuple(t.split("#", 1)) if "#" in t else (t, "") for t in targets]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", page.read_text(encoding="utf-8")), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_and_headings(path):
    missing, no_heading = [], []
    for target, fragment in _relative_links(path):
        page = path.parent / target if target else path
        if not page.exists():
            missing.append(target)
        elif fragment and page.suffix == ".md" and fragment not in _anchors(page):
            no_heading.append(f"{target}#{fragment}")
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"
    assert not no_heading, f"{path.relative_to(ROOT)} links to headings that do not exist: {no_heading}"


def test_link_finder_sees_links_outside_code_only(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Top: the `page`\n[a](docs/x.md) ![g](img.png#frag) [w](https://example.org) [s](#top-the-page)\n"
                    "```\n[not a link](nowhere.md)\n# not a heading\n```\n", encoding="utf-8")
    assert _relative_links(page) == [("docs/x.md", ""), ("img.png", "frag"), ("", "top-the-page")]
    assert _anchors(page) == {"top-the-page"}


def test_readme_is_a_quick_start_that_maps_every_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert "pip install nox && nox -s tests" in lines  # .ci/run runs this command
    linked = {Path(t).name for t, _ in _relative_links(README) if t}
    unlinked = [p.name for p in PAGES if p.name not in linked]
    assert not unlinked, f"README.md's map does not link {unlinked}"


def _top_level_names(module: Path) -> set[str]:
    """Names a module defines, imports or exports at its top level (what ``from module import name`` finds).

    ``__all__`` counts too, also as ``sorted(EXPORTS)`` over a literal: packages such as ``augbench.data``
    export names lazily through a module ``__getattr__``.
    """
    names: set[str] = set()
    literals: dict[str, ast.expr] = {}
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                       if isinstance(t, ast.Name)]
            names.update(targets)
            literals.update(dict.fromkeys(targets, node.value))
    exported = literals.get("__all__")
    if isinstance(exported, ast.Call) and exported.args and isinstance(exported.args[0], ast.Name):
        exported = literals.get(exported.args[0].id)
    if isinstance(exported, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
        items = exported.keys if isinstance(exported, ast.Dict) else exported.elts
        names.update(i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str))
    return names


def _resolves(dotted: str) -> bool:
    """Whether ``augbench.a.b[.name]`` is a package, a module or a top-level name of one, in the checkout.

    Read from the files, not imported: naming a module in the docs must not cost its imports here.
    """
    parts = dotted.split(".")
    for known in sorted(PACKAGE_DIRS, key=len, reverse=True):
        if dotted == known or dotted.startswith(known + "."):
            folder, rest = PACKAGE_DIRS[known], parts[len(known.split(".")):]
            break
    for i, part in enumerate(rest):
        if (folder / part / "__init__.py").is_file():
            folder = folder / part
        elif (folder / f"{part}.py").is_file():
            module = folder / f"{part}.py"
            return len(rest) == i + 1 or (len(rest) == i + 2 and rest[i + 1] in _top_level_names(module))
        else:
            return len(rest) == i + 1 and part in _top_level_names(folder / "__init__.py")
    return True


def test_module_paths_in_docs_exist():
    """Every ``augbench.*`` name in the README and docs/ is importable under the layout's import names."""
    stale = set()
    for path in [README, *PAGES]:
        text = path.read_text(encoding="utf-8")
        imported = [f"{module}.{name.strip()}" for module, names in FROM_IMPORT.findall(text)
                    for name in names.split(",")]
        stale |= {(path.relative_to(ROOT).as_posix(), name) for name in [*DOTTED.findall(text), *imported]
                  if not _resolves(name)}
    assert not stale, f"docs name modules that do not exist (moved? use the package name): {sorted(stale)}"


def test_module_path_resolver_tells_modules_names_and_typos_apart():
    assert _resolves("augbench.reporting.method_docs.render_methods_page")
    assert _resolves("augbench.methods") and _resolves("augbench.reporting")
    assert _resolves("augbench.data.open_dataset")  # exported lazily: __all__ = sorted(_EXPORTS)
    assert not _resolves("augbench.reporting.method_docs.no_such_function")
    assert not _resolves("augbench.no_such_package.module")
