"""``augbench data fetch``: download a dataset from its public sources, only when asked (USER_NEEDS §2.1-2.3).

A card's ``[[download]]`` tables list the files to fetch, each with mirrors (``urls``, tried in order)
and the checksums the card pins (``md5`` / ``sha256``; ``"unknown"`` when none is published). A file
whose checksum does not match is deleted and the next mirror is tried; a file without a pinned checksum
is kept and its sha256 printed so that it can be pinned. Archives are extracted with path checks.
Datasets without a public source (Stanford Cars) print the card's manual steps instead.
"""

from __future__ import annotations

import os
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from augbench.data.cards import DatasetCard
from augbench.data.core import DataError
from augbench.data.verify import compare_hashes, file_hashes, pinned_hashes

USER_AGENT = "augbench-fetch/0.1"
Echo = Callable[[str], None]


def manual_instructions(card: DatasetCard) -> str:
    """The card's instructions and expected tree, for datasets that cannot be fetched."""
    from augbench.data.readers.layout import expected_tree, how_to_obtain

    return f"{how_to_obtain(card)}\n\nExpected layout:\n{expected_tree(card)}"


def _urls(entry: dict[str, Any]) -> list[str]:
    urls = entry.get("urls") or ([entry["url"]] if entry.get("url") else [])
    return [str(u) for u in urls]


def plan(card: DatasetCard, data_root: Path) -> list[dict[str, Any]]:
    """What ``fetch`` would do: one dict per file (name, urls, target path, pinned hashes, extract dir)."""
    out = []
    for entry in card.downloads:
        name = entry.get("file")
        urls = _urls(entry)
        if not name or not urls:
            raise DataError(f"{card.path}: every [[download]] needs 'file' and 'urls'")
        dest = data_root / str(entry.get("dest", "."))
        extract = bool(entry.get("extract", True))
        target = (data_root / name) if extract else (dest / name)
        out.append({"file": name, "urls": urls, "target": target, "hashes": pinned_hashes(entry),
                    "extract_to": dest if extract else None})
    return out


def _download(url: str, target: Path, timeout: float, echo: Echo) -> None:
    part = target.with_name(target.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, next_report = 0, 0.1
            while block := response.read(1 << 20):
                out.write(block)
                done += len(block)
                if total and done / total >= next_report:
                    echo(f"  {done / 2**20:,.0f} / {total / 2**20:,.0f} MiB")
                    next_report += 0.1
        os.replace(part, target)
    finally:
        if part.exists():
            part.unlink()


def fetch_file(item: dict[str, Any], echo: Echo = print, timeout: float = 60.0) -> Path:
    """Download one planned file, trying each mirror until one gives a file with the pinned checksums.

    Raises:
        DataError: every mirror failed; the message lists each URL and why.
    """
    target: Path = item["target"]
    hashes: dict[str, str] = item["hashes"]
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        ok, detail = compare_hashes(target, hashes) if hashes else (True, "no pinned checksum")
        if ok:
            echo(f"{target}: already downloaded ({detail})")
            return target
        echo(f"{target}: present but {detail}; downloading again")
    errors = []
    for url in item["urls"]:
        echo(f"downloading {url}")
        try:
            _download(url, target, timeout, echo)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"  {url}: {exc}")
            continue
        if hashes:
            ok, detail = compare_hashes(target, hashes)
            if not ok:
                target.unlink()
                errors.append(f"  {url}: checksum mismatch ({detail})")
                continue
            echo(f"  checksum ok ({detail})")
        else:
            got = file_hashes(target)
            echo(f"  no checksum pinned for {item['file']}; got sha256 {got['sha256']} md5 {got['md5']} "
                 f"(pin it in the card to detect changed mirrors)")
        return target
    raise DataError(f"could not download {item['file']}; every source failed:\n" + "\n".join(errors))


def _safe_members_tar(tf: tarfile.TarFile, dest: Path) -> None:
    root = dest.resolve()
    for m in tf.getmembers():
        path = (dest / m.name).resolve()
        if root != path and root not in path.parents:
            raise DataError(f"refusing to extract {m.name!r}: it would land outside {dest}")
        if m.issym() or m.islnk():
            link = (path.parent / m.linkname).resolve()
            if root not in link.parents and link != root:
                raise DataError(f"refusing to extract link {m.name!r} -> {m.linkname!r}")


def extract(archive: Path, dest: Path, echo: Echo = print) -> None:
    """Extract a tar (any compression) or zip archive into ``dest``, refusing paths that escape it."""
    dest.mkdir(parents=True, exist_ok=True)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                _safe_members_tar(tf, dest)
                tf.extractall(dest)
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            root = dest.resolve()
            for name in zf.namelist():
                path = (dest / name).resolve()
                if root != path and root not in path.parents:
                    raise DataError(f"refusing to extract {name!r}: it would land outside {dest}")
            zf.extractall(dest)
    else:
        raise DataError(f"{archive} is neither a tar nor a zip archive; delete it and fetch again")
    echo(f"extracted {archive.name} into {dest}")


def fetch_dataset(
    card: DatasetCard,
    data_root: Path,
    echo: Echo = print,
    timeout: float = 60.0,
    keep_archives: bool = True,
) -> list[Path]:
    """Download and extract every ``[[download]]`` file of ``card`` into ``data_root``.

    Returns:
        The downloaded files.

    Raises:
        DataError: the card has no public source (the message holds the manual steps), or a file could
            not be fetched from any mirror.
    """
    if not card.downloads:
        raise DataError(f"{card.name} has no public download source; get it manually:\n\n{manual_instructions(card)}")
    data_root = Path(data_root).expanduser()
    data_root.mkdir(parents=True, exist_ok=True)
    files = []
    for item in plan(card, data_root):
        path = fetch_file(item, echo=echo, timeout=timeout)
        files.append(path)
        if item["extract_to"] is not None:
            extract(path, item["extract_to"], echo=echo)
            if not keep_archives:
                path.unlink()
    return files

