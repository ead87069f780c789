"""The output root's layout, and the per-video manifest that drives resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


class OutputRoot:
    """Where each artifact of a run lives under OUT (see DESIGN.md, Data flow)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def matches(self) -> Path:
        return self.root / "matches"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest"

    @property
    def spans(self) -> Path:
        return self.root / "spans.parquet"

    @property
    def shards(self) -> Path:
        return self.root / "shards"

    @property
    def videos(self) -> Path:
        """Fetched videos, kept or deleted after pass 1 by fetch.cache."""
        return self.root / "videos"

    @property
    def fetch(self) -> Path:
        """The per-URL fetch manifest: done, failed with a class, or quarantined."""
        return self.root / "fetch"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    def make(self) -> None:
        for folder in (self.images, self.index, self.matches, self.manifest, self.shards):
            folder.mkdir(parents=True, exist_ok=True)

    def remove_stale_temps(self) -> int:
        """Delete temp files that a killed run left behind (never visible as results)."""
        stale = list(self.root.rglob(".*.tmp-*"))
        for path in stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return len(stale)

    def manifest_entry(self, video_id: str) -> Path:
        return self.manifest / f"{video_id}.json"

    def read_manifest(self) -> dict[str, dict]:
        """video_id -> its recorded state (status done or failed, error, shot data)."""
        entries = {}
        for path in sorted(self.manifest.glob("*.json")):
            entry = json.loads(path.read_text())
            entries[entry["video_id"]] = entry
        return entries

    def read_fetch(self) -> dict[str, dict]:
        """video_id -> its fetch record (status done, failed or quarantined; class; error; runs)."""
        if not self.fetch.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.fetch.glob("*.json"))}
