"""``augbench models check [--profile P] [--suite S] [--offline] [--json]``: every model a run needs, where each
is looked for, whether it is there and how to put a local copy in place (issue 23; the twin of ``data verify``).

With ``--suite`` the models of that suite's cells on the profile (the check ``augbench run`` makes before its
first cell, :func:`augbench.run.models.check_models`); without, those of every built-in suite. It reads configs
and file names only: nothing is loaded or downloaded. Exit status 0 when every model is present (or, unless
``--offline``, will be downloaded by the run because the profile allows downloads), 1 when one is missing.
"""

from __future__ import annotations

import argparse
import json
import os


def add_models_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="check that every model a run needs is available",
                              description="List every model a suite needs on a profile (pipelines, CLIP, LPIPS, "
                                          "the classifier's weights, Diff-II's captioner), where each is looked for, "
                                          "whether it is there and the variable or command that puts it in place.")
    sub = p.add_subparsers(dest="models_command", metavar="{check}")
    sub.required = True
    from augbench.run.profiles import MODEL_VARIABLES

    epilog = "Local copies (AUGBENCH_<PROFILE>_<KEY>, e.g. AUGBENCH_SD15_PIPELINE): " + "; ".join(
        f"{key}: {what}" for key, what in MODEL_VARIABLES.items()) + \
        ". Diff-II's captioner suffixes: AUGBENCH_SUFFIX_CAPTIONER, AUGBENCH_SUFFIX_LLM_URL / _KEY / _MODEL."
    c = sub.add_parser("check", help="check the models of a suite (default: every built-in suite) on a profile",
                       description="Check the models a suite needs on a profile, without loading or downloading any.",
                       epilog=epilog)
    c.add_argument("--profile", default="embedded", help="profile (default: embedded)")
    c.add_argument("--suite", default=None, help="suite name or TOML path (default: every built-in suite)")
    c.add_argument("--offline", action="store_true",
                   help="count models the run would download as missing (an air-gapped machine)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_models_check)


def _users(needed_by: tuple[str, ...], every: set[str], limit: int = 4) -> str:
    if len(every) > limit and set(needed_by) == every:
        return f"every method ({len(every)})"
    shown = ", ".join(needed_by[:limit])
    return shown + (f" +{len(needed_by) - limit} more" if len(needed_by) > limit else "")


def format_table(entries: list, header: str) -> str:
    """The table ``models check`` prints: role, state, needed by; under each row the model and where it is
    looked for, what was found and, when it is not present, the fix."""
    from augbench.run.models import ROLE_TITLES

    every = {m for e in entries for m in e.needed_by}
    rows = [(e.role, e.state, _users(e.needed_by, every)) for e in entries]
    width = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("ROLE", "STATE"))]
    lines = [header, f"{'ROLE':<{width[0]}}  {'STATE':<{width[1]}}  NEEDED BY"]
    for entry, row in zip(entries, rows, strict=True):
        lines.append(f"{row[0]:<{width[0]}}  {row[1]:<{width[1]}}  {row[2]}")
        lines.append(f"    {ROLE_TITLES.get(entry.role, entry.role)}: {entry.location or '(none)'}")
        lines.append(f"    {entry.detail}")
        if not entry.present:
            lines.append(f"    fix: {entry.fix}")
    return "\n".join(lines)


def cmd_models_check(args: argparse.Namespace) -> int:
    """``augbench models check``: exit 0 when every model is available, 1 when one is missing."""
    import dataclasses

    from augbench.run.cells import RunOptions, plan_cells
    from augbench.run.models import profile_models, suite_models
    from augbench.run.profiles import get_profile
    from augbench.run.suites import load_suite

    profile = get_profile(args.profile)
    if args.suite:
        suite = load_suite(args.suite, args.profile)
        apply = getattr(suite, "apply_to_profile", None)
        entries = suite_models(suite, plan_cells(suite, RunOptions(suite=args.suite, profile=args.profile)),
                               apply(profile) if callable(apply) else profile)
        scope = f"suite {suite.name}"
    else:
        entries = profile_models(profile)
        scope = "every built-in suite"
    if args.offline:
        entries = [dataclasses.replace(e, downloadable=False) for e in entries]
    missing = [e for e in entries if e.state == "missing"]
    if args.json:
        print(json.dumps({"profile": profile.name, "scope": scope, "ok": not missing,
                          "models": [e.to_dict() for e in entries]}, indent=2))
        return 1 if missing else 0
    hub_offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    downloads = "off" if args.offline or profile.local_files_only or hub_offline else "allowed"
    print(format_table(entries, f"models of {scope} on profile {profile.name} (downloads: {downloads}):"))
    to_fetch = sum(e.state == "download" for e in entries)
    summary = (f"{len(missing)} of {len(entries)} models missing" if missing else
               f"all {len(entries)} models available" + (f" ({to_fetch} downloaded by the run on first use)"
                                                        if to_fetch else ""))
    print(f"\n{summary}")
    return 1 if missing else 0
