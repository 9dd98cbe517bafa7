"""One self-contained HTML page per suite: tables, plots and sample grids (DESIGN.md, "Results and reports").

The page carries everything inline (images as base64 PNG), so it can be mailed or attached to a
review as one file. It is built from the result records and the synthetic sets cached in the run
directory only: no model is loaded. Sections:

- the suite's table and caption, the long-tail class-group table and any published tables the suite
  names: the same pandas frames the Markdown, LaTeX and CSV reports render (``augbench.reporting.tables``),
  written by ``Styler.to_html``, so every format shows the same numbers;
- plots (matplotlib, the ``report`` extra): accuracy per method and column with the std over seeds
  as error bars, and the training loss per epoch (mean over seeds) of every method;
- sample grids: for each synthetic set (one per method and column, first seed), up to
  ``grid_classes`` classes × ``grid_per_class`` images, with their labels as text.

Without matplotlib the page is still written, with tables and sample grids, and says how to get the
plots; grids need only Pillow, a core dependency.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from augbench.reporting.plots import figure_image
from augbench.reporting.tables import table_layout
from augbench.run.records import CellRecord

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-size: 0.85em; color: #444; padding-bottom: 0.4em; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #444; }
img { max-width: 100%; image-rendering: pixelated; }
"""


def _png_data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _html_table(frame, cap: str) -> str:
    """One table through pandas' Styler: cells and headers HTML-escaped, the caption on top, no index."""
    styler = (frame.style.hide(axis="index").format(escape="html").format_index(escape="html", axis=1)
              .set_caption(html.escape(cap)))
    return styler.to_html()


def _label_text(label: dict[str, float]) -> str:
    """``name`` for a one-hot label, ``a 0.70 / b 0.30`` for a mixed one (largest first)."""
    parts = sorted(label.items(), key=lambda kv: -kv[1])
    if len(parts) == 1 or parts[1][1] == 0:
        return parts[0][0]
    return " / ".join(f"{name} {p:.2f}" for name, p in parts[:2] if p > 0)


def synthetic_grid(syn_dir: Path, grid_classes: int = 8, grid_per_class: int = 6, cell: int = 96) -> Image.Image:
    """Rows = the first ``grid_classes`` target classes of the set (manifest order), columns = their
    first ``grid_per_class`` images, each scaled to at most ``cell`` pixels (never up: the page shows
    pixels, and small embedded images stay small in the file), with the class label to the left."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(syn_dir / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            key = row.get("target_class") or _label_text(row["label"])
            if key in rows or len(rows) < grid_classes:
                if len(rows[key]) < grid_per_class:
                    rows[key].append(row)
    first = next(iter(rows.values()), [])
    if first:
        with Image.open(syn_dir / first[0]["file"]) as im:
            cell = min(cell, im.width)
    label_w = 220
    grid = Image.new("RGB", (label_w + grid_per_class * cell, max(1, len(rows)) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for r, (key, items) in enumerate(rows.items()):
        draw.text((4, r * cell + cell // 2 - 6), key[:34], fill="black")
        for c, item in enumerate(items):
            with Image.open(syn_dir / item["file"]) as im:
                tile = im.convert("RGB").resize((cell, cell), Image.NEAREST)
            grid.paste(tile, (label_w + c * cell, r * cell))
            text = _label_text(item["label"])
            if text != key:  # mixed labels: show them on the tile
                draw.rectangle((label_w + c * cell, r * cell + cell - 12, label_w + (c + 1) * cell, r * cell + cell),
                               fill="white")
                draw.text((label_w + c * cell + 2, r * cell + cell - 12), text[:16], fill="black")
    return grid


def edit_grid(syn_dir: Path, load_source, sources: int = 8, edits: int = 5, cell: int = 96) -> Image.Image | None:
    """Editing methods: one row per source image (the real image first, framed), then its edits with
    their strengths. ``load_source(image_id)`` gives the real image (or raises when the data is absent).
    ``None`` when the set's images have no source (text-to-image methods)."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(syn_dir / "manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            src = (row.get("sources") or [None])[0]
            if src is not None and (src in rows or len(rows) < sources) and len(rows[src]) < edits:
                rows[src].append(row)
    if not rows:
        return None
    with Image.open(syn_dir / next(iter(rows.values()))[0]["file"]) as im:
        cell = min(cell, im.width)
    grid = Image.new("RGB", ((edits + 1) * cell + 8, len(rows) * cell), "white")
    draw = ImageDraw.Draw(grid)
    for r, (src, items) in enumerate(rows.items()):
        try:
            grid.paste(load_source(src).convert("RGB").resize((cell, cell), Image.BILINEAR), (0, r * cell))
        except Exception:  # noqa: BLE001 - the real data may be absent where the report is rendered
            draw.text((4, r * cell + cell // 2 - 6), "source n/a", fill="black")
        draw.line((cell + 3, r * cell, cell + 3, (r + 1) * cell), fill="black", width=2)
        for c, item in enumerate(items):
            with Image.open(syn_dir / item["file"]) as im:
                grid.paste(im.convert("RGB").resize((cell, cell), Image.NEAREST), (8 + (c + 1) * cell, r * cell))
            strength = (item.get("provenance") or {}).get("strength") or (item.get("mix") or {}).get("s")
            if strength is not None:
                draw.text((8 + (c + 1) * cell + 2, r * cell + 2), f"s={strength:g}", fill="white")
    return grid


def _column_label(record: CellRecord) -> str:
    """``toybirds (shots=5)``: the record's dataset and protocol parameters, as the tables label columns."""
    params = ", ".join(f"{k}={v}" for k, v in record.cell["protocol_params"].items()) or "full"
    return f"{record.cell['dataset']} ({params})"


def _source_loader(records: Sequence[CellRecord]):
    """``image_id -> PIL image`` of the records' dataset (the first record's), opened lazily."""
    from augbench.data import open_dataset

    dataset = records[0].cell["dataset"] if records else None
    state: dict[str, Any] = {}

    def load(image_id: str) -> Image.Image:
        if "source" not in state:
            state["source"] = open_dataset(dataset)
        return state["source"].load_image(image_id)

    return load


def _synthetic_sets(records: Sequence[CellRecord], run_dir: Path) -> list[tuple[list[str], str, Path | None]]:
    """(methods, column label, directory or None when missing) of each distinct synthetic set, first
    seed per method and column; methods sharing a set (``sd_random`` and ``sd_random+cutmix``) share
    its entry. The directory is looked up under ``run_dir`` by its cache key, so a moved run directory
    still finds its sets."""
    first: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    for rec in records:
        if rec.synthetic is None:
            continue
        key = (rec.cell["method"], _column_label(rec))
        if key not in first or rec.cell["seed"] < first[key][0]:
            first[key] = (rec.cell["seed"], rec.synthetic)
    by_set: dict[str, tuple[list[str], str, dict[str, Any]]] = {}
    for (method, column), (_, syn) in sorted(first.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        entry = by_set.setdefault(syn["key"], ([], column, syn))
        entry[0].append(method)
    out = []
    for key, (methods, column, syn) in by_set.items():
        candidates = [run_dir / "cache" / "synthetic" / key, Path(syn["dir"])]
        found = next((p for p in candidates if (p / "manifest.jsonl").is_file()), None)
        out.append((methods, column, found))
    return out


def _accuracy_plot(table, plt) -> Image.Image:
    labels = table.labels
    n = max(1, len(table.methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) * n / 3), 3.6), dpi=100)
    width = 0.8 / n
    for i, method in enumerate(table.methods):
        cells = [table.cell(method, c) for c in table.columns]
        means = [mean for mean, _, _ in cells]
        stds = [std or 0.0 for _, std, _ in cells]
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [0 if math.isnan(m) else m for m in means], width, yerr=stds if any(stds) else None, capsize=2,
               label=method, color=f"C{i % 10}")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, ncol=min(3, n))
    ax.grid(axis="y", alpha=0.3)
    return figure_image(fig, plt)


def _loss_plot(records: Sequence[CellRecord], table, plt) -> Image.Image | None:
    curves: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        for h in rec.history or []:  # one entry per epoch (augbench.training.loop)
            curves[(_column_label(rec), rec.cell["method"])][int(h["epoch"])].append(float(h["train_loss"]))
    if not curves:
        return None
    per_column = table_layout(table.kind).columns_are_cells
    columns = [c for c in (table.labels if per_column else []) if any(k[0] == c for k in curves)]
    columns = columns or sorted({k[0] for k in curves})
    # one colour per method across subplots and the accuracy plot: the table's row order
    order = list(table.methods)
    order += sorted({m for _, m in curves} - set(order))
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2), dpi=100, squeeze=False)
    for ax, column in zip(axes[0], columns):
        for i, method in enumerate(order):
            by_epoch = curves.get((column, method))
            if by_epoch:
                epochs = sorted(by_epoch)
                ax.plot(epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs], label=method,
                        color=f"C{i % 10}")
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("training loss (mean over seeds)")
    axes[0][0].legend(fontsize=7)
    return figure_image(fig, plt)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def to_html(table, records: Sequence[CellRecord], run_dir: Path, title: str, tables: Sequence[tuple[Any, str]],
            grid_classes: int = 8, grid_per_class: int = 6, figures: Sequence[tuple[Image.Image, str]] = ()) -> str:
    """The whole page. ``table`` is the ``augbench.reporting.tables.ReportTable`` (for the plots); ``tables`` are
    the (DataFrame, caption) pairs of ``augbench.reporting.formats.report_tables``: ours, the class-group table,
    the published ones, exactly as the text reports render them; ``figures`` are more (image, caption)
    plots shown first (a sweep's CLIP score and LPIPS, ``augbench.reporting.plots``)."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"]
    parts.append("<h2>Results</h2>")
    parts += [_html_table(frame, cap) for frame, cap in tables]
    plt = _pyplot()
    parts.append("<h2>Plots</h2>")
    parts += [f"<figure><img alt='{esc(cap)}' src='{_png_data_uri(image)}'><figcaption>{esc(cap)}</figcaption>"
              "</figure>" for image, cap in figures]
    if plt is None:
        parts.append("<p>Plots need matplotlib: <code>pip install 'augbench[report]'</code> "
                     "(the nox sessions install it).</p>")
    else:
        parts.append(f"<figure><img alt='accuracy per method' src='{_png_data_uri(_accuracy_plot(table, plt))}'>"
                     "<figcaption>Accuracy per method and column; error bars = sample std over seeds "
                     "(none with one seed).</figcaption></figure>")
        loss = _loss_plot(records, table, plt)
        if loss is not None:
            parts.append(f"<figure><img alt='training loss' src='{_png_data_uri(loss)}'>"
                         "<figcaption>Classifier training loss per epoch, mean over seeds.</figcaption></figure>")
    sets = _synthetic_sets(records, run_dir)
    if sets:
        parts.append("<h2>Synthetic samples</h2>")
    for methods, column, syn_dir in sets:
        method = ", ".join(methods)
        if syn_dir is None:
            parts.append(f"<p>{esc(method)} — {esc(column)}: synthetic set not found under "
                         f"{esc(str(run_dir / 'cache' / 'synthetic'))} (run directory moved or cache cleared).</p>")
            continue
        edits = edit_grid(syn_dir, _source_loader(records))
        if edits is not None:
            parts.append(f"<figure><img alt='{esc(method)} edits' src='{_png_data_uri(edits)}'><figcaption>"
                         f"{esc(method)} — {esc(column)}, first seed: source image → its edits (s = strength) of "
                         f"<code>{esc(str(syn_dir))}</code>.</figcaption></figure>")
            continue
        grid = synthetic_grid(syn_dir, grid_classes, grid_per_class)
        parts.append(f"<figure><img alt='{esc(method)} samples' src='{_png_data_uri(grid)}'><figcaption>"
                     f"{esc(method)} — {esc(column)}, first seed: the first {grid_classes} classes × "
                     f"{grid_per_class} images of <code>{esc(str(syn_dir))}</code>.</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)
