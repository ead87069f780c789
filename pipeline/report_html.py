"""`vcc inspect --html DIR`: a report that opens from the file system, with no server.

DIR/index.html holds a grid of sample cards (caption image, playable clip, caption, similarity,
span, video), inline JS to sort and filter them, PNG plots and a failures table. Clips, poster
frames, caption thumbnails and plots are files under DIR referenced by relative paths. Large runs
are sampled (seeded), never dumped. The report is built in a hidden folder beside DIR and swapped
into place, so DIR is always a whole report.
"""

from __future__ import annotations

import glob
import hashlib
import html
import io
import json
import logging
import os
import random
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline import plots
from pipeline.inspect import (
    InspectError,
    RunView,
    failure_records,
    read_clips,
    summarize,
)

log = logging.getLogger(__name__)

MARKER = ".vcc-report"
THUMB_PX = 320
MAX_FAILURE_ROWS = 1000


def safe_name(name: str) -> str:
    """A file name for an id: the id itself when it is plain, else a hash of it."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        return name
    return "h" + hashlib.sha1(name.encode()).hexdigest()[:20]


def pick_cards(clips: pa.Table, max_cards: int, seed: int) -> pa.Table:
    """At most max_cards rows, a seeded sample when there are more; best similarity first."""
    if clips.num_rows > max_cards:
        picks = sorted(random.Random(seed).sample(range(clips.num_rows), max_cards))
        clips = clips.take(pa.array(picks, pa.int64()))
    order = sorted(range(clips.num_rows), key=lambda i: -clips["similarity"][i].as_py())
    return clips.take(pa.array(order, pa.int64()))


def _prepare(out_dir: Path) -> Path:
    """A fresh hidden build folder beside out_dir; refuses an out_dir that is not a report."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InspectError(f"{out_dir} exists and is not a folder")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise InspectError(
                f"{out_dir} is a folder that holds other files, not a vcc report; "
                "give a new or empty folder"
            )
    build = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    for sub in ("media/clips", "media/frames", "media/images", "plots"):
        (build / sub).mkdir(parents=True)
    (build / MARKER).write_text("a report written by `vcc inspect --html`; safe to replace\n")
    return build


def _commit(build: Path, out_dir: Path) -> None:
    """Swap the finished build folder into place; an old report is removed after the swap."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(build, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_media(view: RunView, cards: pa.Table, build: Path) -> None:
    """Each card's clip (MP4 as cut) and its first frame as the video's poster."""
    by_shard: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for shard, row, clip_id in zip(
        cards["shard"].to_pylist(), cards["row"].to_pylist(), cards["clip_id"].to_pylist()
    ):
        by_shard[shard].append((row, clip_id))
    files = {Path(f).name: f for f in view.files}
    for shard, wanted in by_shard.items():
        table = pq.read_table(files[shard], columns=["clip", "frames"])
        media = table.take(pa.array([row for row, _ in wanted], pa.int64())).to_pylist()
        for (_, clip_id), item in zip(wanted, media):
            name = safe_name(clip_id)
            (build / "media/clips" / f"{name}.mp4").write_bytes(item["clip"])
            if item["frames"]:
                (build / "media/frames" / f"{name}.jpg").write_bytes(item["frames"][0])


def _image_files(path: str) -> list[str]:
    if any(ch in path for ch in "*?["):
        return sorted(glob.glob(path, recursive=True))
    if os.path.isdir(path):
        return sorted(str(p) for p in Path(path).rglob("*.parquet"))
    return [path] if os.path.isfile(path) else []


def write_caption_images(view: RunView, keys: set[str], build: Path) -> tuple[set[str], str]:
    """Thumbnails of the caption images the cards show, read from the run's image table.

    Returns the keys written and a note for the page when the table cannot be read.
    """
    source = (view.run.get("inputs") or {}).get("images")
    fetched = view.root.images / "fetched" / "table" if view.root is not None else None
    if fetched is not None and fetched.is_dir():  # the input was a URL list: what was fetched
        source = str(fetched)
    files = _image_files(source) if source else []
    if not files:
        where = source or "no run.json beside the shards"
        return set(), f"caption images are not shown: the image table is not found ({where})"
    written: set[str] = set()
    for file in files:
        try:
            table = pq.read_table(file, columns=["key", "jpg"], filters=[("key", "in", keys)])
        except (pa.ArrowException, OSError) as err:
            log.warning("skipping image table file %s: %s", file, err)
            continue
        for key, data in zip(table["key"].to_pylist(), table["jpg"].to_pylist()):
            key = str(key)
            if key in written or data is None:
                continue
            try:
                with Image.open(io.BytesIO(data)) as image:
                    thumb = image.convert("RGB")
                    thumb.thumbnail((THUMB_PX, THUMB_PX))
                    thumb.save(build / "media/images" / f"{safe_name(key)}.jpg", quality=85)
                written.add(key)
            except Exception as err:  # noqa: BLE001 - a bad image shows as a note on its card
                log.warning("caption image %s does not decode: %s", key, err)
    return written, ""


def write_plots(summary: dict, view: RunView, build: Path) -> list[tuple[str, str]]:
    """The PNG plots; returns (file, title) pairs in page order."""
    d = summary["distributions"]
    made = []

    def add(name: str, title: str, data: bytes) -> None:
        (build / "plots" / name).write_bytes(data)
        made.append((f"plots/{name}", title))

    for key, title, xlabel in [
        ("similarity", "similarity of the clips", "similarity"),
        ("duration_s", "clip durations", "seconds"),
    ]:
        if d[key].get("count"):
            h = d[key]["histogram"]
            add(f"{key}.png", title, plots.histogram(h["edges"], h["counts"], title, xlabel))
    per_image = d["clips_per_image"]
    if per_image.get("count"):
        values = range(1, int(per_image["max"]) + 1)
        counts = summary["images_by_clip_count"]
        add(
            "clips_per_image.png",
            "clips per caption image",
            plots.bars(
                [str(v) for v in values],
                [counts.get(v, 0) for v in values],
                "clips per caption image",
                "clips per image",
                "images",
                counts=True,
            ),
        )
    per_video = list(summary["clips_per_video"].items())[:40]
    if per_video:
        add(
            "clips_per_video.png",
            "clips per video (most first, at most 40)",
            plots.bars(
                [v for v, _ in per_video],
                [c for _, c in per_video],
                "clips per video",
                "video",
                "clips",
                counts=True,
            ),
        )
    made.extend(_training_plots(summary, view, build))
    return made


def _training_plots(summary: dict, view: RunView, build: Path) -> list[tuple[str, str]]:
    from training.report import read_metrics

    training = summary["training"]
    if not training:
        return []
    made = []
    records = read_metrics(training["dir"])
    if records:
        steps = [r["step"] for r in records]
        series = {
            name: (steps, [float(r.get(name, float("nan"))) for r in records])
            for name in ("loss", "contrastive", "caption")
            if any(name in r for r in records)
        }
        data = plots.lines(series, "training loss", "step", "loss")
        (build / "plots/loss.png").write_bytes(data)
        made.append(("plots/loss.png", "training loss per step"))
    evaluation = training["evaluation"]
    recall_keys = ["t2v_r@1", "t2v_r@5", "t2v_r@10", "v2t_r@1", "v2t_r@5", "v2t_r@10"]
    if all(k in evaluation for k in recall_keys):
        chance = evaluation.get("chance_r@5")
        data = plots.bars(
            [k.replace("_r@", " R@") for k in recall_keys],
            [float(evaluation[k]) for k in recall_keys],
            f"held-out recall ({evaluation.get('clips', '?')} clips)",
            "direction and k",
            "recall",
            reference=("chance R@5", float(chance)) if chance is not None else None,
        )
        (build / "plots/recall.png").write_bytes(data)
        made.append(("plots/recall.png", "held-out text<->video recall"))
    return made


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def render_card(row: dict, has_image: bool, has_poster: bool) -> str:
    name = safe_name(row["clip_id"])
    image = (
        f'<img src="media/images/{safe_name(row["image_key"])}.jpg" '
        f'alt="caption image {_e(row["image_key"])}">'
        if has_image
        else '<div class="missing">caption image not available</div>'
    )
    poster = f' poster="media/frames/{name}.jpg"' if has_poster else ""
    span = f"{row['start_s']:.2f}–{row['end_s']:.2f} s ({row['duration_s']:.1f} s)"
    data = {
        "sim": f"{row['similarity']:.6f}",
        "video": row["video_id"],
        "start": f"{row['start_s']:.3f}",
        "dur": f"{row['duration_s']:.3f}",
        "caption": row["caption"].lower(),
    }
    attrs = " ".join(f'data-{k}="{_e(v)}"' for k, v in data.items())
    video = (
        f'<video src="media/clips/{name}.mp4"{poster} controls muted loop playsinline '
        'preload="none"></video>'
    )
    return (
        f'<article class="card" {attrs}>\n'
        f'<div class="pair"><figure>{image}<figcaption>image {_e(row["image_key"])}</figcaption>'
        f"</figure>\n<figure>{video}<figcaption>clip {_e(row['clip_id'])}</figcaption></figure>"
        f'</div>\n<p class="caption">{_e(row["caption"])}</p>\n'
        f'<p class="meta"><b>{row["similarity"]:.3f}</b> · {_e(row["video_id"])} · {span} · '
        f"matched at {row['match_t_s']:.1f} s</p>\n</article>"
    )


def _summary_table(summary: dict) -> str:
    run, m = summary["run"], summary["manifest"]
    rows = [
        ("clips", summary["clips"]),
        ("shards", summary["shards"]),
        ("videos with clips", summary["videos"]),
        ("caption images with clips", summary["images"]),
        ("hours of clips", f"{summary['hours']:.3f}"),
        ("videos in the manifest", f"{m['videos']} ({m['done']} done, {m['failed']} failed)"),
        ("failures", summary["failures"]["total"]),
        ("run id", run["run_id"] or "–"),
        ("embedder", run["embedder"] or "–"),
        ("index", f"{run['index_type'] or '–'} ({run['index_vectors'] or 0} vectors)"),
    ]
    changes = run["config_changes"]
    if changes is not None:
        rows.append(
            ("config changed from defaults", ", ".join(f"{k}={v}" for k, v in changes.items()))
        )
    for key in ("similarity", "duration_s"):
        dist = summary["distributions"][key]
        if dist.get("count"):
            rows.append(
                (
                    key,
                    " · ".join(
                        f"{k} {dist[k]:.3f}" for k in ("min", "p10", "median", "p90", "max")
                    ),
                )
            )
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{body}</table>'


def _failures_section(records: list[dict], dropped: dict) -> str:
    if not records and not any(dropped.values()):
        return "<p>No failures recorded.</p>"
    groups: dict[tuple[str, str], int] = defaultdict(int)
    for record in records:
        groups[(record["stage"], record["reason"])] += 1
    grouped = "".join(
        f"<tr><td>{_e(s)}</td><td>{n}</td><td>{_e(r)}</td></tr>"
        for (s, r), n in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[1]))
    )
    shown = records[:MAX_FAILURE_ROWS]
    detail = "".join(
        f"<tr><td>{_e(r['stage'])}</td><td>{_e(r['item'])}</td><td>{_e(r['error'])}</td></tr>"
        for r in shown
    )
    more = (
        f"<p>{len(records) - len(shown)} more failures are not listed.</p>"
        if len(records) > len(shown)
        else ""
    )
    drops = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v)
    return (
        '<table class="failures" id="failure-reasons"><tr><th>stage</th><th>count</th>'
        f"<th>reason</th></tr>{grouped}</table>"
        + (f"<p>Dropped in select (not failures): {_e(drops)}</p>" if drops else "")
        + '<details><summary>every failure</summary><table class="failures" id="failures">'
        f"<tr><th>stage</th><th>item</th><th>error</th></tr>{detail}</table>{more}</details>"
    )


def _training_section(summary: dict) -> str:
    training = summary["training"]
    if not training:
        return ""
    evaluation = training["evaluation"]
    captions = "".join(
        f"<tr><td>{_e(c.get('generated'))}</td><td>{_e(c.get('true'))}</td></tr>"
        for c in evaluation.get("captions", [])
    )
    scores = ", ".join(
        f"{k} {evaluation[k]:.3f}"
        for k in ("bleu4", "cider_d", "t2v_r@5", "chance_r@5")
        if k in evaluation
    )
    return (
        f"<h2>Training</h2><p>{training['steps']} steps, loss {training['loss_first']:.3f} → "
        f"{training['loss_last']:.3f}. {_e(scores)}</p>"
        + (
            "<table class='failures'><tr><th>generated caption</th><th>true caption</th></tr>"
            f"{captions}</table>"
            if captions
            else ""
        )
    )


def render_page(
    summary: dict,
    cards_html: list[str],
    videos: list[str],
    plot_files: list[tuple[str, str]],
    failures_html: str,
    note: str,
    sampled_note: str,
) -> str:
    options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in videos)
    figures = "".join(
        f'<figure class="plot"><img src="{_e(src)}" alt="{_e(title)}"><figcaption>{_e(title)}'
        "</figcaption></figure>"
        for src, title in plot_files
    )
    title = f"vcc report: {summary['root'] or 'shards'}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
{_summary_table(summary)}
<h2>Clips</h2>
<p>{_e(sampled_note)} {_e(note)}</p>
<div class="controls">
<label>sort <select id="sort">
<option value="sim-desc">similarity, best first</option>
<option value="sim-asc">similarity, worst first</option>
<option value="video">video, then time</option>
<option value="dur-desc">duration, longest first</option>
</select></label>
<label>min similarity <input id="min-sim" type="range" min="0" max="1" step="0.01" value="0">
<span id="min-sim-value">0.00</span></label>
<label>video <select id="video"><option value="">all</option>{options}</select></label>
<label>caption <input id="text" type="search" placeholder="words in the caption"></label>
<span id="count"></span>
</div>
<div id="grid">
{"".join(cards_html)}
</div>
<h2>Distributions</h2>
<div class="plots">{figures}</div>
{_training_section(summary)}
<h2>Failures</h2>
{failures_html}
<script>{JS}</script>
</body></html>
"""


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;background:#fafafa}
h1{font-size:20px;word-break:break-all}h2{margin-top:28px}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}
.controls{display:flex;flex-wrap:wrap;gap:16px;align-items:center;margin:10px 0;padding:8px;
background:#fff;border:1px solid #ddd}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card[hidden]{display:none}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}
figure{margin:0}figure img,figure video{width:100%;height:160px;object-fit:contain;
background:#111;display:block}
figcaption{font-size:11px;color:#666;word-break:break-all}
.caption{font-size:15px;margin:6px 0 2px}.meta{color:#555;margin:0}
.missing{height:160px;display:flex;align-items:center;justify-content:center;background:#eee;
color:#777}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot img{width:560px;height:300px}
.failures td{font-size:12px;word-break:break-word}
"""

JS = """
(function () {
  const grid = document.getElementById('grid');
  const cards = Array.from(grid.querySelectorAll('.card'));
  const sort = document.getElementById('sort');
  const minSim = document.getElementById('min-sim');
  const video = document.getElementById('video');
  const text = document.getElementById('text');
  const count = document.getElementById('count');
  const num = (card, key) => parseFloat(card.dataset[key]);
  const orders = {
    'sim-desc': (a, b) => num(b, 'sim') - num(a, 'sim'),
    'sim-asc': (a, b) => num(a, 'sim') - num(b, 'sim'),
    'video': (a, b) => a.dataset.video.localeCompare(b.dataset.video) ||
      num(a, 'start') - num(b, 'start'),
    'dur-desc': (a, b) => num(b, 'dur') - num(a, 'dur'),
  };
  function apply() {
    const min = parseFloat(minSim.value);
    const vid = video.value;
    const words = text.value.toLowerCase().trim();
    document.getElementById('min-sim-value').textContent = min.toFixed(2);
    let shown = 0;
    for (const card of cards) {
      const keep = num(card, 'sim') >= min && (!vid || card.dataset.video === vid) &&
        (!words || card.dataset.caption.includes(words));
      card.hidden = !keep;
      if (keep) shown += 1;
    }
    for (const card of cards.slice().sort(orders[sort.value])) grid.appendChild(card);
    count.textContent = shown + ' of ' + cards.length + ' cards shown';
  }
  for (const el of [sort, minSim, video, text]) el.addEventListener('input', apply);
  apply();
})();
"""


def write_report(view: RunView, out_dir: str | Path, max_cards: int = 200, seed: int = 0) -> Path:
    """Write the report to out_dir (replacing an earlier report there); returns index.html."""
    out_dir = Path(out_dir).resolve()
    clips = read_clips(view)
    summary = summarize(view, clips)
    cards = pick_cards(clips, max_cards, seed)
    build = _prepare(out_dir)
    try:
        write_media(view, cards, build)
        rows = cards.to_pylist()
        images, note = write_caption_images(view, {r["image_key"] for r in rows}, build)
        plot_files = write_plots(summary, view, build)
        posters = {p.stem for p in (build / "media/frames").glob("*.jpg")}
        cards_html = [
            render_card(r, r["image_key"] in images, safe_name(r["clip_id"]) in posters)
            for r in rows
        ]
        sampled = (
            f"{len(rows)} cards: a sample (seed {seed}) of the {clips.num_rows} clips."
            if clips.num_rows > len(rows)
            else f"All {len(rows)} clips."
        )
        page = render_page(
            summary,
            cards_html,
            sorted({r["video_id"] for r in rows}),
            plot_files,
            _failures_section(failure_records(view), summary["dropped"]),
            note,
            sampled,
        )
        (build / "index.html").write_text(page, encoding="utf-8")
        (build / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        _commit(build, out_dir)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info("wrote the report of %d cards to %s", len(rows), out_dir)
    return out_dir / "index.html"
