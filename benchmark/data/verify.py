"""``augbench data verify``: check a dataset copy against its card (USER_NEEDS §2.1, §2.7, §2.10).

Checks, in order: the folder and the files the layout requires (a missing root shows the expected tree
and how to obtain the data); the class order against the release's own class list; the number of
images of every split against the card's ``[splits]`` (and Waterbirds' group counts); that every
listed image file exists; files in the image folders that no split lists; checksums of downloaded
files where the card pins one; optionally, that every image decodes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augbench.data.cards import DatasetCard
from augbench.data.core import DataError, ImageSource, open_dataset, resolve_data_root
from augbench.data.readers.birds import WaterbirdsSource
from augbench.data.readers.layout import check_required, locate_dataset
from augbench.data.readers.official import IMAGE_SUFFIXES, OfficialSource, open_image

MAX_LISTED = 10
HASH_ALGORITHMS = ("sha256", "md5")


@dataclass(frozen=True)
class Check:
    """One verification result: ``status`` is ``ok``, ``warn``, ``fail`` or ``skip``."""

    status: str
    what: str
    detail: str = ""


@dataclass
class VerifyReport:
    """All checks of one dataset."""

    dataset: str
    name: str
    root: str | None = None
    checks: list[Check] = field(default_factory=list)

    def add(self, status: str, what: str, detail: str = "") -> None:
        self.checks.append(Check(status, what, detail))

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips do not fail a dataset)."""
        return not any(c.status == "fail" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "name": self.name,
            "root": self.root,
            "ok": self.ok,
            "checks": [{"status": c.status, "what": c.what, "detail": c.detail} for c in self.checks],
        }

    def format(self) -> str:
        lines = [f"{self.dataset} ({self.name})" + (f"  root: {self.root}" if self.root else "")]
        tags = {"ok": "[ok]  ", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}
        for c in self.checks:
            lines.append(f"  {tags.get(c.status, c.status)} {c.what}")
            if c.detail:
                lines.extend(f"         {line}" for line in c.detail.splitlines())
        n = len(self.failures)
        lines.append("result: OK" if self.ok else f"result: FAILED ({n} problem{'s' if n != 1 else ''})")
        return "\n".join(lines)


def file_hashes(path: Path, algorithms: tuple[str, ...] = HASH_ALGORITHMS, chunk: int = 1 << 20) -> dict[str, str]:
    """Hex digests of ``path`` for each algorithm, computed in one pass."""
    hashers = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def pinned_hashes(entry: dict[str, Any]) -> dict[str, str]:
    """The checksums a ``[[download]]`` entry pins (``"unknown"`` and empty values are ignored)."""
    out = {}
    for alg in HASH_ALGORITHMS:
        value = str(entry.get(alg, "") or "").strip().lower()
        if value and value != "unknown":
            out[alg] = value
    return out


def compare_hashes(path: Path, pinned: dict[str, str]) -> tuple[bool, str]:
    """Whether ``path`` matches every pinned hash, and a one-line description."""
    got = file_hashes(path, tuple(pinned) or HASH_ALGORITHMS)
    bad = [f"{alg} {got[alg]} != expected {want}" for alg, want in pinned.items() if got[alg] != want]
    if bad:
        return False, "; ".join(bad)
    return True, ", ".join(f"{alg} {got[alg]}" for alg in got)


def _listed(items: list[str], limit: int = MAX_LISTED) -> str:
    more = f"\n... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n".join(items[:limit]) + more


def verify_dataset(
    card: DatasetCard,
    data_root: str | Path | None = None,
    check_images: bool = False,
    source: ImageSource | None = None,
) -> VerifyReport:
    """Verify one dataset copy against its card.

    Args:
        card: the dataset card.
        data_root: ``--data-root`` (default ``$AUGBENCH_DATA``).
        check_images: also decode every image (slow on real data).
        source: an already opened source (skips opening).

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is False when any check failed.
    """
    report = VerifyReport(card.id, card.name)
    if source is None:
        source = _open_checked(card, resolve_data_root(data_root), report)
        if source is None:
            return report
    if isinstance(source, OfficialSource):
        report.root = str(source.root)
        report.add("ok", source.class_check)
    _verify_split_counts(card, source, report)
    if isinstance(source, WaterbirdsSource):
        _verify_group_counts(card, source, report)
    if isinstance(source, OfficialSource):
        _verify_image_files(source, report, check_images)
        _verify_checksums(card, source, report)
    return report


def _open_checked(card: DatasetCard, root: Path | None, report: VerifyReport) -> ImageSource | None:
    """The dataset opened by its reader after the layout check; None (the failure added) when either fails."""
    if card.kind != "embedded":
        try:
            folder = locate_dataset(card, root)
            report.root = str(folder)
            check_required(card, folder)
        except DataError as exc:
            report.add("fail", "layout", str(exc))
            return None
        report.add("ok", "layout: every required file is present")
    try:
        return open_dataset(card, root)
    except DataError as exc:
        report.add("fail", "reading the official files", str(exc))
        return None


def _verify_split_counts(card: DatasetCard, source: ImageSource, report: VerifyReport) -> None:
    """The number of images of every split against the card's ``[splits]``."""
    available = source.split_names()
    for split, expected in card.splits.items():
        if split not in available:
            report.add("fail", f"split {split!r} is missing", f"available: {', '.join(available)}")
            continue
        actual = len(source.samples(split))
        if actual == expected:
            report.add("ok", f"split {split!r}: {actual:,} images (as the card says)")
        else:
            first = not any(c.what.startswith("split ") and c.status == "fail" for c in report.checks)
            report.add("fail", f"split {split!r}: {actual:,} images, the card says {expected:,}",
                       "an incomplete or different copy of the dataset; re-extract or re-download it" if first else "")


def _verify_group_counts(card: DatasetCard, source: WaterbirdsSource, report: VerifyReport) -> None:
    """Waterbirds' four (y, place) group counts of every split against the card's ``[waterbirds]`` table."""
    expected_groups = card.raw.get("waterbirds", {}).get("group_counts", {})
    for split in source.split_names():
        got = source.group_counts(split)
        want = {str(k): int(v) for k, v in expected_groups.get(split, {}).items()}
        text = ", ".join(f"{k}: {v:,}" for k, v in got.items())
        if not want:
            report.add("ok", f"groups of {split!r} (y, place): {text}")
        elif got == want:
            report.add("ok", f"groups of {split!r} (y, place): {text} (as the card says)")
        else:
            report.add("fail", f"groups of {split!r} (y, place): {text}",
                       "card: " + ", ".join(f"{k}: {v:,}" for k, v in want.items()))


def _verify_image_files(source: OfficialSource, report: VerifyReport, check_images: bool) -> None:
    """Every listed image file exists, no unlisted image sits in the image folders, and (optionally) all decode."""
    paths = source.image_paths()
    missing = sorted(str(p) for p in paths.values() if not p.is_file())
    if missing:
        report.add("fail", f"{len(missing):,} listed image file(s) missing", _listed(missing))
    else:
        report.add("ok", f"all {len(paths):,} listed image files exist")
    listed = {p.resolve() for p in paths.values()}
    extra: list[str] = []
    for folder in source.image_dirs():
        if folder.is_dir():
            extra.extend(
                str(p) for p in sorted(folder.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() not in listed
            )
    if extra:
        report.add("warn", f"{len(extra):,} image file(s) in the image folders are not listed by any split", _listed(extra))
    if not check_images:
        return
    bad = []
    for image_id in sorted(paths):
        if not paths[image_id].is_file():
            continue
        try:
            open_image(paths[image_id])
        except DataError as exc:
            bad.append(str(exc).split(". Re-extract")[0])
    if bad:
        report.add("fail", f"{len(bad):,} image(s) cannot be decoded", _listed(bad))
    else:
        report.add("ok", f"all {len(paths):,} images decode")


def _verify_checksums(card: DatasetCard, source, report: VerifyReport) -> None:
    data_root = source.data_root or source.root.parent
    for entry in card.downloads:
        name = str(entry.get("file", ""))
        if not name:
            continue
        pinned = pinned_hashes(entry)
        dest = data_root / str(entry.get("dest", "."))
        if entry.get("extract", True):  # an archive: kept next to the data by `fetch`, if at all
            candidates = [data_root / name, dest / name, source.root.parent / name]
        else:  # a plain file that belongs in the dataset folder (e.g. Flowers' .mat files)
            candidates = [dest / name, source.root / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            what = "archive" if entry.get("extract", True) else "file"
            report.add("skip", f"checksum of {name}: {what} not present", "")
            continue
        if not pinned:
            got = file_hashes(path)
            report.add("skip", f"checksum of {name}: the card pins none", f"sha256 {got['sha256']}")
            continue
        ok, detail = compare_hashes(path, pinned)
        if ok:
            report.add("ok", f"checksum of {path}", detail)
        else:
            report.add("fail", f"checksum of {path} does not match the card", detail + "\nre-download the file")
