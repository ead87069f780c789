"""The mining DAG on Ray: images -> index; videos -> frames -> matches; select; cut -> shards.

Pass 1 streams videos through Ray Data: decode tasks (CPU) yield frame chunks, embed+search
actors (a GPU each when the embedder runs on CUDA) turn them into matches, and the driver records
each finished video in the manifest. Select runs on the driver over all matches. Pass 2 runs one
Ray task per video of each shard group to cut clips and one task per group to write its shard.

Every step is resumable: a video with a manifest entry, an index with matching metadata, and a
shard that exists are never redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Ray Data logs each dataset's start and end at INFO; the driver's progress line says enough
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import ray

from mining.atomic import write_json, write_parquet
from mining.fetch_images import fetch_images, read_url_list
from mining.images import InputError, read_image_table, validate_rows
from mining.index import ImageIndex, write_meta
from mining.select import VideoShots, plan_groups, select_spans
from mining.shards import shard_name, write_shard
from mining.urls import check_urls
from mining.videos import list_videos
from pipeline.config import FetchConfig, MineConfig, RayConfig
from pipeline.fetching import HostGate, ImageFetchProgress, fetch_videos, summarize_fetch
from pipeline.progress import Progress
from pipeline.stages import EmbedImages, MatchFrames, cut_video, decode_videos, embedder_id
from pipeline.store import OutputRoot

log = logging.getLogger(__name__)


# what one decode task may hold: a chunk of frames in flight plus the decoder's own buffers
DECODE_MEMORY = 512 * 2**20


class RunMismatchError(RuntimeError):
    """OUT holds a run made with another config or other inputs."""


@dataclass
class MineResult:
    out: Path
    shards: list[str]
    stats: dict


def _versions() -> dict[str, str]:
    import av
    import faiss

    return {
        "python": platform.python_version(),
        "ray": ray.__version__,
        "pyarrow": pa.__version__,
        "av": av.__version__,
        "faiss": faiss.__version__,
        "numpy": np.__version__,
    }


def init_ray(cfg: RayConfig) -> None:
    """Join the cluster named by config or RAY_ADDRESS, else start an embedded Ray."""
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    # "local" starts a new instance even when a `ray start` cluster runs here; "auto" joins it
    kwargs = {"address": address} if address else {"address": "local", "num_cpus": cfg.num_cpus}
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def _table_digest(table: pa.Table) -> str:
    h = hashlib.sha1()
    for key, caption, size in zip(
        table["key"].to_pylist(),
        table["caption"].to_pylist(),
        pa.compute.binary_length(table["jpg"]).to_pylist(),
    ):
        h.update(f"{key}\x1f{caption}\x1f{size}\x1e".encode())
    return h.hexdigest()[:16]


def check_run(out: OutputRoot, cfg: MineConfig, inputs: dict[str, str]) -> dict:
    """The run's record for run.json; refuses an OUT made with another config or inputs."""
    run = {
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "inputs": {name: os.path.abspath(path) for name, path in inputs.items()},
    }
    if out.run_json.exists():
        previous = json.loads(out.run_json.read_text())
        if previous.get("fingerprint") != run["fingerprint"]:
            raise RunMismatchError(
                f"{out.root} was mined with another config (fingerprint "
                f"{previous.get('fingerprint')} vs {run['fingerprint']}); "
                "use a new --out or the same config"
            )
        if previous.get("inputs") != run["inputs"]:
            raise RunMismatchError(
                f"{out.root} was mined from other inputs ({previous.get('inputs')}); "
                "use a new --out"
            )
    return run


def embed_images(
    cfg: MineConfig, out: OutputRoot, table: pa.Table
) -> tuple[list[str], list[str], dict]:
    """Embed the usable images and build the index, unless OUT already has them for this table."""
    digest = _table_digest(table)
    meta_path = out.index / "meta.json"
    if meta_path.exists() and (out.images / "images.parquet").exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("table_digest") == digest:
            done = pq.read_table(out.images / "images.parquet", columns=["key", "caption"])
            log.info("reusing index of %d images from %s", meta["images"], out.index)
            return done["key"].to_pylist(), done["caption"].to_pylist(), meta

    started = time.perf_counter()
    usable, failures = validate_rows(table)
    embedded = (
        ray.data.from_arrow(usable)
        .repartition(max(1, min(64, usable.num_rows // 256)))
        .map_batches(
            _bound(EmbedImages, cfg),
            batch_size=256,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cfg.embed.actors),
            **_embed_resources(cfg),
        )
        .to_arrow_refs()
    )
    result = pa.concat_tables(ray.get(embedded))
    bad = pa.compute.not_equal(result["error"], "")
    for key, error in zip(
        result.filter(bad)["key"].to_pylist(), result.filter(bad)["error"].to_pylist()
    ):
        failures.append({"key": key, "status": "failed", "error": error})
    good = result.filter(pa.compute.invert(bad))
    if good.num_rows == 0:
        raise ValueError(
            f"none of the {table.num_rows} images is usable: first failure {failures[:1]}"
        )

    dim = good.schema.field("embedding").type.list_size
    embs = good["embedding"].combine_chunks().flatten().to_numpy().reshape(-1, dim)
    mirrored = None
    if cfg.index.add_flipped:
        mirrored = good["mirrored"].combine_chunks().flatten().to_numpy().reshape(-1, dim)
    index = ImageIndex.build(embs, mirrored, cfg.index.type, cfg.index.nprobe)
    index.save(out.index)
    write_parquet(out.images / "images.parquet", good.select(["key", "caption", "embedding"]))
    failure_table = pa.Table.from_pylist(
        failures,
        schema=pa.schema([("key", pa.string()), ("status", pa.string()), ("error", pa.string())]),
    )
    write_parquet(out.images / "failures.parquet", failure_table)
    meta = {
        "table_digest": digest,
        "images": good.num_rows,
        "failed": len(failures),
        "embedder": embedder_id(cfg.embed),
        "index_type": cfg.index.type,
        "vectors": int(index.index.ntotal),
        "dim": dim,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_meta(out.index, meta)
    log.info(
        "embedded %d images (%d failed) in %.1fs", good.num_rows, len(failures), meta["seconds"]
    )
    return good["key"].to_pylist(), good["caption"].to_pylist(), meta


def _bound(cls: type, *args) -> type:
    """cls with its constructor arguments bound, so that Ray Data ships them with the class.

    Arguments passed as fn_constructor_args live in the object store, which makes Ray warn that
    a restarted actor could lose them.
    """

    class Bound(cls):
        def __init__(self) -> None:
            super().__init__(*args)

    Bound.__name__ = Bound.__qualname__ = cls.__name__
    return Bound


def _embed_resources(cfg: MineConfig) -> dict:
    return {"num_gpus": 1} if cfg.embed.device == "cuda" else {"num_cpus": 1}


def match_videos(cfg: MineConfig, out: OutputRoot, videos: list[dict]) -> None:
    """Pass 1: decode, embed and search every video not yet in the manifest."""
    manifest = out.read_manifest()
    todo = [v for v in videos if v["video_id"] not in manifest]
    if not todo:
        return
    progress = Progress("pass 1 (find)", len(todo), "videos")
    stream = (
        ray.data.from_items(todo, override_num_blocks=len(todo))
        # decode tasks scale out on their own; their memory request also keeps Ray Data from
        # fusing them into the few embed actors, which would serialise decoding
        .map_batches(
            decode_videos,
            fn_kwargs={"cfg": cfg},
            batch_size=1,
            batch_format="pyarrow",
            num_cpus=1,
            memory=DECODE_MEMORY,
        )
        .map_batches(
            _bound(MatchFrames, cfg, str(out.index), str(out.images / "images.parquet")),
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cfg.embed.actors),
            **_embed_resources(cfg),
        )
    )
    pending: dict[str, dict] = defaultdict(lambda: {"chunks": {}, "last": None})
    hits_total = 0
    for row in stream.iter_rows():
        state = pending[row["video_id"]]
        state["chunks"][row["chunk"]] = row
        if row["last"]:
            state["last"] = row["chunk"]
        if state["last"] is None or len(state["chunks"]) < state["last"] + 1:
            continue
        chunks = [state["chunks"][i] for i in range(state["last"] + 1)]
        del pending[row["video_id"]]
        hits = _record_video(out, chunks)
        if cfg.fetch.cache == "delete" and Path(chunks[-1]["path"]).parent == out.videos:
            Path(chunks[-1]["path"]).unlink(missing_ok=True)  # pass 2 fetches sections
        if hits is None:
            progress.update(failed=1)
        else:
            hits_total += hits
            progress.update(done=1, extra=f"{hits_total} matches")
    progress.close()


def _record_video(out: OutputRoot, chunks: list[dict]) -> int | None:
    """Write one video's matches, then its manifest entry (the commit point)."""
    last = chunks[-1]
    video_id = last["video_id"]
    entry = {"video_id": video_id, "path": last["path"]}
    if last["error"]:
        write_json(
            out.manifest_entry(video_id), {**entry, "status": "failed", "error": last["error"]}
        )
        return None
    boundaries = [b for c in chunks for b in zip(c["boundaries"][::2], c["boundaries"][1::2])]
    matches = pa.table(
        {
            "t_s": pa.array([t for c in chunks for t in c["hit_t"]], pa.float64()),
            "image_key": pa.array([k for c in chunks for k in c["hit_key"]], pa.string()),
            "similarity": pa.array([s for c in chunks for s in c["hit_score"]], pa.float32()),
        }
    )
    write_parquet(out.matches / f"{video_id}.parquet", matches)
    write_json(
        out.manifest_entry(video_id),
        {
            **entry,
            "status": "done",
            "error": "",
            "duration_s": last["duration_s"],
            "fps": last["fps"],
            "frames_sampled": sum(c["frames_seen"] for c in chunks),
            "boundaries": boundaries,
            "matches": matches.num_rows,
            "decode_s": round(last["decode_s"], 3),
        },
    )
    return matches.num_rows


def plan_shards(cfg: MineConfig, spans: list[dict]) -> list[int]:
    """Each span's shard group, by rows and by bytes estimated from the clips' length."""
    bytes_per_second = 200_000 * (cfg.cut.max_height / 360) ** 2
    return plan_groups(spans, cfg.shards.max_rows, cfg.shards.max_bytes, bytes_per_second)


def select(
    cfg: MineConfig, out: OutputRoot, captions: dict[str, str], video_urls: dict[str, str]
) -> tuple[list[dict], dict]:
    """Select spans over all done videos and plan shard groups; written to spans.parquet."""
    manifest = {k: v for k, v in out.read_manifest().items() if v["status"] == "done"}
    matches, shots = {}, {}
    for video_id, entry in manifest.items():
        table = pq.read_table(out.matches / f"{video_id}.parquet")
        matches[video_id] = list(
            zip(
                table["t_s"].to_pylist(),
                table["image_key"].to_pylist(),
                table["similarity"].to_pylist(),
            )
        )
        shots[video_id] = VideoShots(
            [tuple(b) for b in entry["boundaries"]], entry["duration_s"], entry["fps"]
        )
    m = cfg.match
    spans, dropped = select_spans(
        matches,
        shots,
        m.clip_seconds,
        m.min_clip_seconds,
        m.max_clips_per_image,
        m.max_clips_per_video,
    )
    groups = plan_shards(cfg, spans)
    for span, group in zip(spans, groups):
        span["caption"] = captions[span["image_key"]]
        span["group"] = group
        span["path"] = manifest[span["video_id"]]["path"]
        span["video_url"] = video_urls[span["video_id"]]
    plan = {
        "videos": sorted(manifest),
        "spans": len(spans),
        "groups": (max(groups) + 1) if groups else 0,
        "dropped": dropped,
    }
    if out.spans.exists():
        previous = pq.read_table(out.spans)
        old = json.loads((previous.schema.metadata or {}).get(b"vcc.plan", b"{}"))
        if old.get("videos") != plan["videos"] and any(out.shards.glob("shard-*.parquet")):
            raise RunMismatchError(
                f"{out.root} already has shards cut from another set of videos; use a new --out"
            )
    table = (
        pa.Table.from_pylist(spans) if spans else pa.table({"video_id": pa.array([], pa.string())})
    )
    table = table.replace_schema_metadata({"vcc.plan": json.dumps(plan)})
    write_parquet(out.spans, table)
    return spans, plan


@ray.remote(num_cpus=1)
def _cut_task(
    video: dict, spans: list[dict], cfg: MineConfig, gate
) -> tuple[list[dict], list[dict]]:
    return cut_video(video, spans, cfg, gate)


@ray.remote(num_cpus=0.25)
def _write_task(folder: str, group: int, run_id: str, compression: str, *parts) -> dict:
    rows = [r for part_rows, _ in parts for r in part_rows]
    failures = [f for _, part_failures in parts for f in part_failures]
    stats = {
        "group": group,
        "failed": len(failures),
        "failures": failures,
        "videos": sorted({r["video_id"] for r in rows}),
    }
    write_shard(folder, group, rows, stats, run_id, compression)
    return {"rows": len(rows), "failed": len(failures)}


def cut_spans(cfg: MineConfig, out: OutputRoot, spans: list[dict], run_id: str) -> dict:
    """Pass 2: cut each missing shard group's clips and write its shard."""
    by_group: dict[int, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for span in spans:
        by_group[span["group"]][span["video_id"]].append(span)
    todo = [g for g in sorted(by_group) if not (out.shards / shard_name(g)).exists()]
    progress = Progress("pass 2 (cut)", len(todo), "shards")
    totals = {"rows": 0, "failed": 0}
    # videos whose files are gone (fetch.cache=delete) are cut from fetched sections
    gate = None
    if any(
        not (s["path"] and os.path.exists(s["path"]))
        for g in todo
        for vs in by_group[g].values()
        for s in vs
    ):
        f = cfg.fetch
        gate = HostGate.remote(f.per_host, f.per_host_rate, f.backoff_s, f.max_backoff_s)
    in_flight = []
    limit = max(2, int(ray.available_resources().get("CPU", 2)))
    for group in todo:
        parts = [
            _cut_task.remote(
                {"video_id": vid, "path": vs[0]["path"], "video_url": vs[0]["video_url"]},
                vs,
                cfg,
                gate,
            )
            for vid, vs in sorted(by_group[group].items())
        ]
        in_flight.append(
            _write_task.remote(str(out.shards), group, run_id, cfg.shards.compression, *parts)
        )
        while len(in_flight) >= limit:
            ready, in_flight = ray.wait(in_flight, num_returns=1)
            _tally(ray.get(ready[0]), totals, progress)
    for ref in in_flight:
        _tally(ray.get(ref), totals, progress)
    progress.close()
    return totals


def _tally(result: dict, totals: dict, progress: Progress) -> None:
    totals["rows"] += result["rows"]
    totals["failed"] += result["failed"]
    progress.update(done=1, extra=f"{totals['rows']} clips, {totals['failed']} cut failures")


def is_image_url_list(images: str) -> bool:
    """A CSV/TSV, or a Parquet file with `url` and no `jpg`: images to fetch, not an image table."""
    suffix = Path(images).suffix.lower()
    if not os.path.isfile(images) or suffix not in (".csv", ".tsv", ".txt", ".parquet"):
        return False
    if suffix != ".parquet":
        return True
    try:
        names = pq.read_schema(images).names
    except (pa.ArrowInvalid, OSError):
        return False  # read_image_table says what is wrong with it
    return "url" in names and "jpg" not in names


def _key_column(url_list: str) -> str | None:
    """The list's own `key` column becomes the image keys (the shards' image_key)."""
    if url_list.lower().endswith(".parquet"):
        names = pq.read_schema(url_list).names
    else:
        delimiter = "\t" if url_list.lower().endswith(".tsv") else ","
        try:
            with pcsv.open_csv(url_list, parse_options=pcsv.ParseOptions(delimiter=delimiter)) as r:
                names = r.schema.names
        except (pa.ArrowInvalid, OSError):
            return None  # read_url_list says what is wrong with it
    return "key" if "key" in names else None


def fetch_image_table(images: str, root: OutputRoot, cfg: FetchConfig) -> str:
    """Fetch an image URL list with img2dataset into OUT/images/fetched; the table's folder."""
    progress = ImageFetchProgress()
    result = fetch_images(
        images,
        str(root.images / "fetched"),
        allow_private=cfg.allow_private,
        key_col=_key_column(images),
        processes=cfg.image_processes,
        threads=cfg.image_threads,
        timeout_s=cfg.timeout_s,
        retries=cfg.retries,
        progress=progress.update,
    )
    progress.close()
    failed = ", ".join(f"{k} {v}" for k, v in sorted(result.failed.items()))
    print(
        f"images: fetched {result.done} of {result.total} with img2dataset in "
        f"{result.seconds:.1f}s" + (f"; failed: {failed}" if failed else ""),
        file=sys.stderr,
    )
    return result.table_path


def prepare(root: OutputRoot) -> None:
    """Make OUT's folders and remove what an interrupted run left half-written."""
    root.make()
    if removed := root.remove_stale_temps():
        log.info("removed %d temp files left by an interrupted run", removed)


def read_shard_stats(root: OutputRoot) -> list[dict]:
    """Every shard's stats (rows, bytes, failed cuts and why), in shard order."""
    return [json.loads(p.read_text()) for p in sorted(root.shards.glob("shard-*.stats.json"))]


def _video_inputs(videos: str, cfg: MineConfig) -> list[dict]:
    """The video list, its URLs checked (schemes, private addresses) before any work."""
    video_list = list_videos(videos, cfg.fetch.url_template)
    urls = [v["video_url"] for v in video_list if v["path"] is None]
    if urls:
        check_urls(urls, cfg.fetch.allow_private)
    return video_list


def fetch(videos: str, out: str, cfg: MineConfig) -> dict:
    """Pass 0 alone: fetch a URL list into OUT, for a later `vcc mine` on the same OUT."""
    video_list = _video_inputs(videos, cfg)
    if all(v["path"] is not None for v in video_list):
        raise InputError(f"videos {videos} list no URLs: there is nothing to fetch")
    root = OutputRoot(out)
    prepare(root)
    init_ray(cfg.ray)
    fetch_videos(cfg.fetch, root, video_list)
    return summarize_fetch(root)


def mine(images: str, videos: str, out: str, cfg: MineConfig) -> MineResult:
    """Run the whole DAG; validates every input before any work, resumes whatever OUT holds."""
    started = time.perf_counter()
    image_urls = is_image_url_list(images)
    table = None if image_urls else read_image_table(images)
    if image_urls:  # checked whole now; fetched once OUT is known to be this run's
        listed = read_url_list(images, key_col=_key_column(images))
        check_urls(listed["url"].to_pylist(), cfg.fetch.allow_private)
    video_list = _video_inputs(videos, cfg)
    urls = [v["video_url"] for v in video_list if v["path"] is None]
    root = OutputRoot(out)
    run = check_run(root, cfg, {"images": images, "videos": videos})
    prepare(root)
    if image_urls:
        table = read_image_table(fetch_image_table(images, root, cfg.fetch))

    init_ray(cfg.ray)
    keys, captions, index_meta = embed_images(cfg, root, table)
    run.update({"run_id": run["fingerprint"], "versions": _versions(), "index": index_meta})
    write_json(root.run_json, run)

    if urls:
        fetch_videos(cfg.fetch, root, video_list)
    match_videos(cfg, root, [v for v in video_list if v["path"] is not None])
    video_urls = {v["video_id"]: v["video_url"] for v in video_list}
    spans, plan = select(cfg, root, dict(zip(keys, captions)), video_urls)
    cut_totals = cut_spans(cfg, root, spans, run["run_id"])
    stats = summarize(root, plan, index_meta)
    stats["seconds"] = round(time.perf_counter() - started, 1)
    write_json(root.stats, stats)
    log.info("pass 2 this run: %s", cut_totals)
    shards = sorted(str(p) for p in root.shards.glob("shard-*.parquet"))
    return MineResult(root.root, shards, stats)


def summarize(root: OutputRoot, plan: dict, index_meta: dict) -> dict:
    """Counts over the whole output root, whichever run produced them."""
    manifest = root.read_manifest()
    failed_videos = {k: v["error"] for k, v in manifest.items() if v["status"] == "failed"}
    shard_stats = read_shard_stats(root)
    image_failures = pq.read_table(root.images / "failures.parquet").to_pylist()
    return {
        "fetch": summarize_fetch(root),
        "videos": len(manifest),
        "videos_done": len(manifest) - len(failed_videos),
        "videos_failed": failed_videos,
        "images": index_meta["images"],
        "images_failed": {f["key"]: f["error"] for f in image_failures},
        "spans": plan["spans"],
        "dropped": plan["dropped"],
        "clips": sum(s["rows"] for s in shard_stats),
        "clips_failed": [f for s in shard_stats for f in s["failures"]],
        "shards": len(shard_stats),
    }
