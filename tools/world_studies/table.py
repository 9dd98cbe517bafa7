"""Markdown tables of study results: ``python -m tools.world_studies.table out/studies/vae.jsonl``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ATTRS = ("body", "crown", "wing", "pattern", "habitat")


def _attrs(row: dict, key: str = "attributes") -> str:
    a = row.get(key) or {}
    return " / ".join(f"{a[k]:.2f}" for k in ATTRS if k in a)


def vae_table(rows: list[dict]) -> str:
    out = ["| run | spec | params | step | train s | recon oracle | PSNR dB | attrs body/crown/wing/pattern/habitat |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("study") != "vae":
            continue
        spec = r.get("spec") or {}
        brief = (f"ch {tuple(spec['channels'])} z{spec['latent']} f{2 ** (len(spec['channels']) - 1)} "
                 f"crop {spec['crop']} b{spec['batch']} perc {spec['perceptual']}" if spec else "")
        out.append(f"| {r['run']} | {brief} | {r.get('params', '')} | {r.get('step', '')} | "
                   f"{r.get('train_seconds', '')} | {r['recon_oracle']:.3f} | {r.get('psnr', float('nan')):.2f} | "
                   f"{_attrs(r)} |")
    return "\n".join(out)


def unet_table(rows: list[dict]) -> str:
    out = ["| run | VAE | step | train s | x0 t=50 | x0 t=200 | x0 t=500 | 25-step desc. faithfulness | "
           "attrs body/crown/wing/pattern/habitat |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("study") != "unet":
            continue
        out.append(f"| {r['run']} | {r.get('vae', '')} | {r['step']} | {r['train_seconds']} | "
                   f"{r['x0_fidelity_t50']:.3f} | {r['x0_fidelity_t200']:.3f} | {r['x0_fidelity_t500']:.3f} | "
                   f"{r['faithfulness_description']:.3f} | {_attrs(r, 'attributes_description')} |")
    return "\n".join(out)


def oracle_table(rows: list[dict]) -> str:
    probes = [r for r in rows if r.get("study") == "oracle" and "probe" in r]
    names = list(dict.fromkeys(r["probe"] for r in probes))
    oracles = list(dict.fromkeys(r["oracle"] for r in probes))
    acc = {(r["oracle"], r["probe"]): r["accuracy"] for r in probes}
    out = ["| images | " + " | ".join(f"{o} oracle" for o in oracles) + " |", "|---|" + "---|" * len(oracles)]
    for p in names:
        out.append(f"| {p} | " + " | ".join(f"{acc.get((o, p), float('nan')):.3f}" for o in oracles) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    for path in argv or sys.argv[1:]:
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        tables = {"vae": vae_table, "unet": unet_table, "oracle": oracle_table}
        for study in dict.fromkeys(r.get("study") for r in rows):
            group = [r for r in rows if r.get("study") == study]
            print(f"\n## {study}\n")
            print(tables[study](group) if study in tables else "\n".join(json.dumps(r) for r in group))


if __name__ == "__main__":
    main()
