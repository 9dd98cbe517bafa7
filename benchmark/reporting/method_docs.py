"""The methods page, ``docs/methods.md``, rendered from the method registry (issue 22 item 8).

Hand-written parameter lists drift from the code; timm lists its models from its registry instead,
and so do we: one section per built-in family with its card (what it changes, the labels it emits,
how its images join training, its cost, METHODS_SPEC references), a table of its parameters (harness
default, the papers' and reference code's values, allowed values, help) and its presets with their
overrides. Everything comes from ``Registry.describe``, which reads the method classes' ``Config``
and ``MethodCard`` only, so rendering imports no diffusers.

``python -m augbench.reporting.method_docs`` writes the page; ``--check`` exits 1 with a one-line
message when the committed page differs from what the registry renders (``tests/test_docs.py`` runs
the same comparison, so a changed default or a new preset fails CI until the page is regenerated).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = ["DEFAULT_PAGE", "render_methods_page", "main"]

#: the built-in distribution; plugins installed beside it are not part of the committed page
BUILT_IN_DISTRIBUTION = "augbench"
#: the checkout this module runs from (``benchmark/`` is ``augbench``); a wheel install has none
CHECKOUT = Path(__file__).resolve().parents[2]
DEFAULT_PAGE = CHECKOUT / "docs" / "methods.md"
REGENERATE = "python -m augbench.reporting.method_docs"


class DescribesMethods(Protocol):
    """What the renderer needs of a registry: family names and ``describe(family)``."""

    def names(self) -> list[str]: ...

    def describe(self, method_id: str) -> dict[str, Any]: ...


def _one_line(text: Any) -> str:
    """Text on one line with table pipes escaped (a pipe ends a Markdown table cell, even in code)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _cell(text: Any) -> str:
    """Prose safe in a Markdown table cell or list item: ``*`` and angle brackets shown literally.

    Cards write formulas (``lam*y_a + (1-lam)*y_b``) and prompts (``a photo of a <class_b>``) that
    Markdown would otherwise render as emphasis or swallow as HTML tags.
    """
    return _one_line(text).replace("*", "\\*").replace("<", "&lt;").replace(">", "&gt;")


def _value(value: Any) -> str:
    """A config value as a suite file would write it (TOML-like), in a code span; ``None`` as is."""
    if value is None:
        return "`None`"
    return f"`{_one_line(json.dumps(value, ensure_ascii=False))}`"


def _paper_and_code(param: Mapping[str, Any]) -> str:
    """The papers' / reference code's values of one parameter (``paper``, and ``code`` when given)."""
    parts = [str(param[key]) if key == "paper" else f"code: {param[key]}"
             for key in ("paper", "code") if param.get(key) not in (None, "")]
    return _cell("; ".join(parts)) if parts else "—"


def _params_table(params: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per config field: name, harness default, paper/code value, allowed values, help."""
    if not params:
        return ["No parameters."]
    lines = ["| parameter | harness default | paper / reference code | choices | help |",
             "|---|---|---|---|---|"]
    for p in params:
        choices = ", ".join(_value(c) for c in p["choices"]) if p.get("choices") else "—"
        lines.append(f"| `{p['name']}` | {_value(p['default'])} | {_paper_and_code(p)} | {choices} | "
                     f"{_cell(p.get('help') or '—')} |")
    return lines


def _presets_table(preset_values: Mapping[str, Mapping[str, Any]], family: str) -> list[str]:
    """One row per preset: its id and the parameters it overrides."""
    if not preset_values:
        return ["No presets."]
    lines = ["| id | overrides |", "|---|---|"]
    for name in sorted(preset_values):
        overrides = ", ".join(f"`{key}` = {_value(value)}" for key, value in preset_values[name].items())
        lines.append(f"| `{family}.{name}` | {overrides or '(none)'} |")
    return lines


def _training_line(training: Mapping[str, Any] | None) -> str:
    """How the family's images join training by default (METHODS_SPEC §4), as the card declares it."""
    if not training:
        return "—"
    # gamma and sigma only shape the diff_mix label rule; elsewhere they are unused defaults
    shown = {k: v for k, v in training.items()
             if training.get("labels") == "diff_mix" or k not in ("label_gamma", "label_sigma")}
    return ", ".join(f"`{key}` = {_value(value)}" for key, value in shown.items())


def _family_section(desc: Mapping[str, Any]) -> list[str]:
    """The section of one family: card, parameters, presets."""
    card = desc.get("card") or {}
    family = desc["id"]
    lines = [f"## `{family}`", "", _cell(desc["summary"]), ""]
    facts = [
        ("kind", f"`{desc['kind']}`"),
        ("class", f"`{desc.get('class', '?')}`"),
        ("changes", card.get("changes")),
        ("labels it emits", card.get("labels")),
        ("joins training", _training_line(card.get("training")) if desc["kind"] == "offline" else None),
        ("cost", card.get("cost")),
        ("references", "; ".join(card.get("references") or ())),
    ]
    lines += [f"- **{label}**: {_cell(text)}" for label, text in facts if text]
    lines += ["", f"### Parameters of `{family}`", "", *_params_table(desc["params"]), "",
              f"### Presets of `{family}`", "", *_presets_table(desc.get("preset_values") or {}, family), ""]
    return lines


def _overview(descs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The index table: family, kind, presets, summary."""
    lines = ["| family | kind | presets | summary |", "|---|---|---|---|"]
    for d in descs:
        presets = ", ".join(f"`{p}`" for p in d.get("presets") or ()) or "—"
        lines.append(f"| [`{d['id']}`](#{d['id']}) | {d['kind']} | {presets} | {_cell(d['summary'])} |")
    return lines


def render_methods_page(registry: DescribesMethods | None = None,
                        distribution: str | None = BUILT_IN_DISTRIBUTION) -> str:
    """The Markdown of ``docs/methods.md``.

    Args:
        registry: where the methods come from (default ``augbench.registry.default_registry()``).
        distribution: only families this distribution supplies (default the built-ins, so an installed
            plugin does not change the committed page); ``None``: every family.
    """
    if registry is None:
        from augbench.registry import default_registry

        registry = default_registry()
    descs = [registry.describe(name) for name in sorted(registry.names())]
    descs = [d for d in descs if distribution is None or d.get("distribution") == distribution]
    head = [
        "# Methods",
        "",
        f"<!-- Generated by `{REGENERATE}` from the method registry; do not edit by hand. -->",
        "",
        "Every method the harness ships, as its class declares it (`augbench methods -v` prints the same). A",
        "method id is `family` or `family.preset`; an offline method and a batch mixer compose as",
        "`offline+batch` (`sd_random+cutmix`, METHODS_SPEC §3.2), and a suite row may set parameters inline:",
        "`\"diff_ii(split_ratio=0.1)\"`. *Harness default* is what a run uses unless a preset or the suite",
        "overrides it; `None` means the profile decides (steps, guidance, resolution). *Paper / reference",
        "code* quotes the papers' and their code's values with METHODS_SPEC sections where they differ.",
        "How a suite overrides the way synthetic images join training: [suites_and_cache.md](suites_and_cache.md).",
        "Writing a method of your own: [plugins.md](plugins.md).",
        "",
    ]
    body = [line for d in descs for line in _family_section(d)]
    return "\n".join([*head, *_overview(descs), "", *body]).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the methods page, or with ``--check`` compare it with the committed one (exit 1 if stale)."""
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else 'method_docs'}",
                                     description="render docs/methods.md from the method registry")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the page differs from what the registry renders")
    parser.add_argument("--output", type=Path, default=None,
                        help="the page (default: docs/methods.md of the checkout augbench runs from)")
    args = parser.parse_args(argv)
    if args.output is None:
        if not (CHECKOUT / "pyproject.toml").is_file():
            print(f"augbench is not running from a checkout ({CHECKOUT} has no pyproject.toml): pass --output PATH",
                  file=sys.stderr)
            return 2
        args.output = DEFAULT_PAGE
    page = render_methods_page()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.is_file() else None
        if current != page:
            state = "is missing" if current is None else "is stale (the method registry renders it differently)"
            print(f"{args.output} {state}: regenerate it with `{REGENERATE}` (or `nox -s docs`)", file=sys.stderr)
            return 1
        return 0
    if not args.output.parent.is_dir():
        print(f"no folder {args.output.parent} to write the page into: pass --output PATH in an existing folder",
              file=sys.stderr)
        return 2
    args.output.write_text(page, encoding="utf-8")
    print(f"wrote {args.output} ({page.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
