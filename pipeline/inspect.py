"""`vcc inspect`: what a run produced. Finds a run's shards and artifacts, summarizes them (counts,
distributions, failures by stage and reason, the run's ids, training), and samples rows.

Validation lives in `pipeline/validate.py`, the HTML report in `pipeline/report_html.py`.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mining.images import InputError
from mining.shards import ShardError, check_schema, shard_paths
from pipeline.store import OutputRoot

# the columns that the summary, the samples and the report's cards read (never clip or frames)
LIGHT_COLUMNS = [
    "clip_id",
    "video_id",
    "image_key",
    "caption",
    "similarity",
    "start_s",
    "end_s",
    "match_t_s",
    "duration_s",
]

SPARK = "▁▂▃▄▅▆▇█"


class InspectError(InputError):
    """A path that holds nothing to inspect, or a report folder that must not be replaced."""


@dataclass
class RunView:
    """The shard files to inspect and, when they belong to a run's OUT, that run's root."""

    files: list[str]
    root: OutputRoot | None

    @functools.cached_property
    def run(self) -> dict:
        """run.json, or {} when the shards stand alone."""
        path = self.root.run_json if self.root else None
        return json.loads(path.read_text()) if path and path.exists() else {}

    @functools.cached_property
    def _manifest(self) -> dict[str, dict]:
        if self.root is None or not self.root.manifest.is_dir():
            return {}
        return self.root.read_manifest()

    def manifest(self) -> dict[str, dict]:
        """video_id -> its manifest entry; {} when the shards stand alone."""
        return self._manifest

    def stats(self) -> dict:
        if self.root is None or not self.root.stats.exists():
            return {}
        return json.loads(self.root.stats.read_text())

    def shard_stats(self) -> list[dict]:
        """The per-shard stats JSON written beside each shard (missing ones are skipped)."""
        out = []
        for file in self.files:
            path = Path(re.sub(r"\.parquet$", ".stats.json", file))
            if path.exists():
                out.append({"shard": Path(file).name, **json.loads(path.read_text())})
        return out

    @property
    def train_dir(self) -> Path | None:
        return self.root.root / "train" if self.root else None


def open_run(path: str | Path) -> RunView:
    """A run's OUT, its shards folder, one shard or a glob; InspectError when it holds no shards."""
    files = shard_paths(path)
    if not files:
        if not Path(path).exists() and not any(ch in str(path) for ch in "*?["):
            raise InspectError(f"{path} does not exist")
        raise InspectError(
            f"no shards under {path}: give a run's output root (OUT), its shards folder, a shard "
            "file or a glob of shard-*.parquet files"
        )
    return RunView(files, _find_root(Path(path), files))


def _find_root(path: Path, files: list[str]) -> OutputRoot | None:
    """The OUT that holds these shards: path itself, or the folder above the shards folder."""
    for candidate in (path, Path(files[0]).parent.parent):
        if (candidate / "run.json").exists() or (candidate / "manifest").is_dir():
            return OutputRoot(candidate)
    return None


def read_clips(view: RunView) -> pa.Table:
    """The light columns of every clip, with `shard` (file name) and `row` (index in it).

    Raises InspectError when a shard's schema is off, pointing at `--validate`.
    """
    tables = []
    for file in view.files:
        try:
            check_schema(pq.read_schema(file), file)
            table = pq.read_table(file, columns=LIGHT_COLUMNS)
        except (ShardError, pa.ArrowException, OSError) as err:
            raise InspectError(
                f"cannot read {file}: {err}; `vcc inspect --validate` lists every problem"
            ) from err
        name = Path(file).name
        table = table.append_column("shard", pa.array([name] * table.num_rows, pa.string()))
        table = table.append_column("row", pa.array(range(table.num_rows), pa.int64()))
        tables.append(table)
    return pa.concat_tables(tables)


def distribution(values: list[float] | np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Count, min, percentiles, max, mean and a histogram of equal-width bins."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0}
    lo, hi = float(arr.min()), float(arr.max())
    counts, edges = np.histogram(arr, bins=bins, range=(lo, hi if hi > lo else lo + 1e-9))
    p10, p50, p90 = np.percentile(arr, [10, 50, 90])
    return {
        "count": int(arr.size),
        "min": lo,
        "p10": float(p10),
        "median": float(p50),
        "p90": float(p90),
        "max": hi,
        "mean": float(arr.mean()),
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }


def normalize_reason(error: str, width: int = 100) -> str:
    """Group errors by kind: quoted names and numbers masked, cut to `width` characters."""
    reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", error.strip().splitlines()[0] if error else "")
    reason = re.sub(r"(?<![A-Za-z0-9._])\d+(\.\d+)?", "N", reason)  # not in names: http_404
    return reason if len(reason) <= width else reason[: width - 1] + "…"


def failure_records(view: RunView) -> list[dict]:
    """Every recorded failure: stage, item, error and its normalized reason.

    Fetches come from OUT/fetch (failed or quarantined URLs), videos from the manifest (a video
    whose fetch failed counts once, as a fetch failure), images from images/failures.parquet, cuts
    from the per-shard stats. A `stage` field in a manifest entry names the stage, else `video`.
    """
    records = _fetch_failures(view)
    fetch_failed = {r["item"] for r in records}
    for video_id, entry in sorted(view.manifest().items()):
        if entry.get("status") == "failed" and video_id not in fetch_failed:
            records.append(
                {"stage": entry.get("stage") or "video", "item": video_id, "error": entry["error"]}
            )
    image_failures = view.root.images / "failures.parquet" if view.root else None
    if image_failures is not None and image_failures.exists():
        for row in pq.read_table(image_failures).to_pylist():
            records.append({"stage": "image", "item": str(row["key"]), "error": row["error"]})
    for stats in view.shard_stats():
        for failure in stats.get("failures", []):
            item = (
                f"{failure.get('video_id')} @ {failure.get('match_t_s', 0.0):.1f}s "
                f"(image {failure.get('image_key')})"
            )
            records.append({"stage": "cut", "item": item, "error": failure.get("error", "")})
    for record in records:
        record["reason"] = normalize_reason(record["error"])
    return records


def _fetch_failures(view: RunView) -> list[dict]:
    """URLs whose fetch failed or was quarantined, from OUT/fetch/<video_id>.json."""
    records = []
    for video_id, entry in (view.root.read_fetch() if view.root else {}).items():
        if entry.get("status") in ("failed", "quarantined"):
            kind = entry.get("class") or entry["status"]
            error = f"{kind}: {entry.get('error', '')}"
            if entry["status"] == "quarantined":
                error = f"quarantined, {error}"
            records.append({"stage": "fetch", "item": video_id, "error": error})
    return records


def _config_changes(config: dict) -> dict[str, Any]:
    """The config fields of the run that differ from today's defaults."""
    from pipeline.config import MineConfig

    def flat(data: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    defaults = flat(MineConfig().to_dict())
    return {k: v for k, v in flat(config).items() if defaults.get(k, object()) != v}


def training_summary(view: RunView) -> dict | None:
    """Steps, the loss trend and the evaluation of OUT/train, or None when there is none."""
    from training.report import loss_trend, read_metrics

    train_dir = view.train_dir
    if train_dir is None or not train_dir.is_dir():
        return None
    records = read_metrics(train_dir)
    eval_path = train_dir / "eval.json"
    evaluation = json.loads(eval_path.read_text()) if eval_path.exists() else {}
    if not records and not evaluation:
        return None
    first, last = loss_trend(records)
    return {
        "steps": len(records),
        "loss_first": first,
        "loss_last": last,
        "evaluation": evaluation,
        "dir": str(train_dir),
    }


def summarize(view: RunView, clips: pa.Table | None = None) -> dict[str, Any]:
    """Everything the terminal summary shows, as JSON-able data."""
    clips = read_clips(view) if clips is None else clips
    per_image = Counter(clips["image_key"].to_pylist())
    per_video = Counter(clips["video_id"].to_pylist())
    durations = clips["duration_s"].to_numpy(zero_copy_only=False)
    manifest = view.manifest()
    failures = failure_records(view)
    by_stage: dict[str, Counter] = {}
    for record in failures:
        by_stage.setdefault(record["stage"], Counter())[record["reason"]] += 1
    run = view.run
    index = run.get("index", {})
    return {
        "root": str(view.root.root) if view.root else None,
        "shards": len(view.files),
        "clips": clips.num_rows,
        "videos": len(per_video),
        "images": len(per_image),
        "hours": float(durations.sum()) / 3600.0,
        "seconds": float(durations.sum()),
        "manifest": {
            "videos": len(manifest),
            "done": sum(e.get("status") == "done" for e in manifest.values()),
            "failed": sum(e.get("status") == "failed" for e in manifest.values()),
        },
        "distributions": {
            "similarity": distribution(clips["similarity"].to_numpy(zero_copy_only=False)),
            "duration_s": distribution(durations),
            "clips_per_image": distribution(list(per_image.values())),
            "clips_per_video": distribution(list(per_video.values())),
        },
        "clips_per_video": dict(per_video.most_common()),
        "images_by_clip_count": dict(sorted(Counter(per_image.values()).items())),
        "failures": {
            "total": len(failures),
            "by_stage": {stage: dict(c.most_common()) for stage, c in sorted(by_stage.items())},
        },
        "dropped": view.stats().get("dropped", {}),
        "run": {
            "run_id": run.get("run_id"),
            "fingerprint": run.get("fingerprint"),
            "embedder": index.get("embedder"),
            "index_type": index.get("index_type"),
            "index_vectors": index.get("vectors"),
            "images_indexed": index.get("images"),
            "inputs": run.get("inputs"),
            "config_changes": _config_changes(run["config"]) if "config" in run else None,
        },
        "training": training_summary(view),
    }


def _spark(dist: dict) -> str:
    counts = dist.get("histogram", {}).get("counts", [])
    top = max(counts, default=0)
    if not top:
        return ""
    return "".join(SPARK[min(len(SPARK) - 1, round(c / top * (len(SPARK) - 1)))] for c in counts)


def _dist_line(name: str, dist: dict, fmt: str) -> str:
    if not dist.get("count"):
        return f"  {name:<16} (none)"
    values = "  ".join(
        f"{k} {format(dist[k], fmt)}" for k in ("min", "p10", "median", "p90", "max")
    )
    return f"  {name:<16} {values}  {_spark(dist)}"


def format_summary(summary: dict, view: RunView) -> str:
    """The terminal summary: a few readable lines per topic."""
    run, m = summary["run"], summary["manifest"]
    lines = [f"run: {summary['root'] or '(shards without their run: no manifest, no run.json)'}"]
    if run["run_id"]:
        lines.append(
            f"  run id {run['run_id']}; embedder {run['embedder']}; index {run['index_type']} "
            f"({run['index_vectors']} vectors over {run['images_indexed']} images)"
        )
        changes = run["config_changes"] or {}
        changed = ", ".join(f"{k}={v}" for k, v in sorted(changes.items())) or "none"
        lines.append(f"  config: changed from the defaults: {changed}")
    lines.append(
        f"clips: {summary['clips']} in {summary['shards']} shards, from {summary['videos']} "
        f"videos and {summary['images']} caption images; {summary['hours']:.3f} hours "
        f"({summary['seconds']:.0f} s)"
    )
    if m["videos"]:
        lines.append(
            f"videos in the manifest: {m['videos']} ({m['done']} done, {m['failed']} failed)"
        )
    d = summary["distributions"]
    lines.append("distributions:")
    lines.append(_dist_line("similarity", d["similarity"], ".3f"))
    lines.append(_dist_line("duration (s)", d["duration_s"], ".2f"))
    lines.append(_dist_line("clips per image", d["clips_per_image"], ".0f"))
    lines.append(_dist_line("clips per video", d["clips_per_video"], ".0f"))
    lines.extend(_failure_lines(summary))
    if summary["training"]:
        from training.report import summarize_training

        t = summary["training"]
        lines.append(summarize_training(t["evaluation"], t["dir"]))
    return "\n".join(lines)


def _failure_lines(summary: dict) -> list[str]:
    failures = summary["failures"]
    lines = [
        f"failures: {failures['total']}" + (" by stage and reason:" if failures["total"] else "")
    ]
    for stage, reasons in failures["by_stage"].items():
        for reason, count in reasons.items():
            lines.append(f"  {stage:<6} {count:>5}  {reason}")
    dropped = {k: v for k, v in summary["dropped"].items() if v}
    if dropped:
        lines.append(
            "dropped in select (not failures): "
            + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
        )
    return lines


def sample_rows(clips: pa.Table, n: int, seed: int) -> list[dict]:
    """n rows drawn without replacement with a seeded generator, in shard order."""
    picks = sorted(random.Random(seed).sample(range(clips.num_rows), min(n, clips.num_rows)))
    return clips.take(pa.array(picks, pa.int64())).to_pylist()


def format_sample(rows: list[dict]) -> str:
    """One line per row: similarity, video, span, caption, and where the row is."""
    if not rows:
        return "(no clips)"
    lines = []
    for r in rows:
        span = f"{r['start_s']:.2f}-{r['end_s']:.2f}s"
        lines.append(
            f"{r['similarity']:.3f}  {r['video_id']}  {span:<15} {r['caption']!r}  "
            f"(clip {r['clip_id']}, {r['shard']} row {r['row']})"
        )
    return "\n".join(lines)
