"""`vcc inspect`: the summary counts what the shards and the manifest hold; --validate passes on a
mined run and names the row and reason of each damage; samples are seeded; the HTML report is
whole, relative and sampled. The browser test is in test_report_browser.py."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from vcc_processes import run_vcc

from pipeline.inspect import InspectError, open_run, summarize
from pipeline.report_html import write_report
from pipeline.validate import validate


def shard_files(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("shard-*.parquet"))


@pytest.fixture()
def run_copy(mined, tmp_path) -> Path:
    """A copy of the mined run that a test may damage."""
    return Path(shutil.copytree(mined.out, tmp_path / "out"))


def test_summary_counts_equal_what_the_shards_and_manifest_hold(mined):
    files = shard_files(mined.out)
    rows = pa.concat_tables(pq.read_table(f) for f in files).to_pylist()
    manifest = [json.loads(p.read_text()) for p in (mined.out / "manifest").glob("*.json")]
    shard_failures = sum(
        len(json.loads(p.read_text())["failures"])
        for p in (mined.out / "shards").glob("*.stats.json")
    )
    image_failures = pq.read_table(mined.out / "images" / "failures.parquet").num_rows
    run = json.loads((mined.out / "run.json").read_text())

    result = run_vcc("inspect", str(mined.out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    per_image = Counter(r["image_key"] for r in rows)
    per_video = Counter(r["video_id"] for r in rows)
    assert summary["clips"] == len(rows) > 0
    assert summary["shards"] == len(files)
    assert summary["videos"] == len(per_video)
    assert summary["images"] == len(per_image)
    assert summary["hours"] == pytest.approx(sum(r["duration_s"] for r in rows) / 3600)
    assert summary["manifest"] == {
        "videos": len(manifest),
        "done": sum(e["status"] == "done" for e in manifest),
        "failed": sum(e["status"] == "failed" for e in manifest),
    }
    assert summary["clips_per_video"] == dict(per_video)
    assert summary["distributions"]["clips_per_image"]["max"] == max(per_image.values())
    sims = [r["similarity"] for r in rows]
    assert summary["distributions"]["similarity"]["min"] == pytest.approx(min(sims))
    assert summary["distributions"]["similarity"]["max"] == pytest.approx(max(sims))
    assert sum(summary["distributions"]["similarity"]["histogram"]["counts"]) == len(rows)
    assert summary["failures"]["total"] == (
        sum(e["status"] == "failed" for e in manifest) + shard_failures + image_failures
    )
    assert summary["run"]["embedder"] == run["index"]["embedder"]
    assert summary["run"]["run_id"] == run["run_id"]
    assert summary["run"]["config_changes"] == {"ray.num_cpus": 2, "shards.max_rows": 3}

    text = run_vcc("inspect", str(mined.out / "shards")).stdout
    assert f"clips: {len(rows)} in {len(files)} shards, from {len(per_video)} videos" in text
    assert f"and {len(per_image)} caption images" in text
    assert f"embedder {run['index']['embedder']}" in text
    assert "shards.max_rows=3" in text


def test_failures_are_counted_by_stage_and_reason(run_copy):
    entry = {"video_id": "broken", "path": "/videos/broken.mp4", "status": "failed"}
    for name, error in [
        ("broken", "MediaError: cannot open as media: [Errno 1094995529] Invalid data: 'a.mp4'"),
        ("broken2", "MediaError: cannot open as media: [Errno 1094995529] Invalid data: 'b.mp4'"),
        ("silent", "MediaError: no video stream (has audio)"),
    ]:
        record = {**entry, "video_id": name, "error": error}
        (run_copy / "manifest" / f"{name}.json").write_text(json.dumps(record))
    stats_path = run_copy / "shards" / "shard-00000.stats.json"
    stats = json.loads(stats_path.read_text())
    stats["failures"] = [
        {
            "video_id": "vid000",
            "image_key": "img1",
            "match_t_s": 3.0,
            "error": "ValueError: span 1.20-1.90s is shorter than min_clip_seconds",
        }
    ]
    stats_path.write_text(json.dumps(stats))
    (run_copy / "fetch").mkdir()
    for name, status, klass in [
        ("gone", "failed", "http_404"),
        ("down", "quarantined", "http_5xx"),
        ("fine", "done", None),
    ]:
        record = {"video_id": name, "url": f"https://host/{name}", "status": status}
        if klass:
            record.update({"class": klass, "error": "HTTP Error", "transient": False})
        (run_copy / "fetch" / f"{name}.json").write_text(json.dumps(record))

    summary = summarize(open_run(run_copy))
    assert summary["failures"]["total"] == 6
    assert summary["failures"]["by_stage"] == {
        "fetch": {"http_404: HTTP Error": 1, "quarantined, http_5xx: HTTP Error": 1},
        "cut": {"ValueError: span N-Ns is shorter than min_clip_seconds": 1},
        "video": {
            "MediaError: cannot open as media: [Errno N] Invalid data: '…'": 2,
            "MediaError: no video stream (has audio)": 1,
        },
    }
    assert summary["manifest"]["failed"] == 3
    text = run_vcc("inspect", str(run_copy)).stdout
    assert "failures: 6 by stage and reason:" in text
    assert "video      2  MediaError: cannot open as media" in text


def test_validate_passes_on_a_mined_run(mined):
    result = run_vcc("inspect", str(mined.out), "--validate")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = sum(pq.read_metadata(f).num_rows for f in shard_files(mined.out))
    assert (
        f"validated {len(shard_files(mined.out))} shards, {rows} clips: all good" in result.stdout
    )


def _rewrite(path: Path, change) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def test_validate_names_the_row_and_reason_of_each_damage(run_copy):
    files = shard_files(run_copy)
    located = [(f, i) for f in files for i in range(pq.read_metadata(f).num_rows)]
    assert len(located) >= 4 and len(files) >= 2
    duration = {
        e["video_id"]: e["duration_s"]
        for e in (json.loads(p.read_text()) for p in (run_copy / "manifest").glob("*.json"))
    }
    truncated, past_end, original, duplicate = located[0], located[1], located[2], located[-1]
    original_id = pq.read_table(original[0])["clip_id"][original[1]].as_py()

    def truncate(rows):
        clip = rows[truncated[1]]["clip"]
        rows[truncated[1]]["clip"] = clip[: len(clip) // 3]

    def push_past_end(rows):
        row = rows[past_end[1]]
        row["end_s"] = duration[row["video_id"]] + 5.0

    def duplicate_id(rows):
        rows[duplicate[1]]["clip_id"] = original_id

    for where, change in [
        (truncated, truncate),
        (past_end, push_past_end),
        (duplicate, duplicate_id),
    ]:
        _rewrite(where[0], change)
    # a whole shard whose similarity column has the wrong type
    wrong = run_copy / "shards" / "shard-09999.parquet"
    table = pq.read_table(files[0])
    similarity = table.schema.get_field_index("similarity")
    pq.write_table(
        table.set_column(similarity, "similarity", table["similarity"].cast("float64")), wrong
    )

    problems, checked = validate(open_run(run_copy))
    by_place: dict[tuple[str, int | None], list[str]] = {}
    for p in problems:
        by_place.setdefault((p.shard, p.row), []).append(p.reason)
    place = lambda loc: (loc[0].name, loc[1])  # noqa: E731
    assert set(by_place) == {
        place(truncated),
        place(past_end),
        place(duplicate),
        ("shard-09999.parquet", None),
    }, problems
    assert any(
        r.startswith(("clip is truncated: ", "clip does not decode: "))
        for r in by_place[place(truncated)]
    )
    assert any("past the video's end" in r for r in by_place[place(past_end)])
    assert by_place[place(duplicate)] == [
        f"duplicate clip_id: also {original[0].name} row {original[1]}"
    ]
    assert by_place[("shard-09999.parquet", None)] == [
        "column similarity is double, expected float"
    ]
    assert checked["rows"] == len(located)

    result = run_vcc("inspect", str(run_copy), "--validate")
    assert result.returncode == 1
    assert f"{len(problems)} problems" in result.stdout
    assert f"{truncated[0].name} row {truncated[1]} (clip " in result.stdout
    assert "shard-09999.parquet: column similarity is double, expected float" in result.stdout


def test_sample_prints_n_seeded_rows(mined):
    captions = set(
        pq.read_table(shard_files(mined.out)[0], columns=["caption"])["caption"].to_pylist()
    )
    captions |= {c for f in shard_files(mined.out) for c in pq.read_table(f)["caption"].to_pylist()}
    first = run_vcc("inspect", str(mined.out), "--sample", "3", "--seed", "7")
    again = run_vcc("inspect", str(mined.out), "--sample", "3", "--seed", "7")
    assert first.returncode == 0 and first.stdout == again.stdout
    lines = first.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert any(repr(c) in line for c in captions), line
        assert " row " in line and "s " in line


def test_a_path_without_shards_is_a_usage_error(tmp_path):
    result = run_vcc("inspect", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"vcc: error: no shards under {tmp_path}")
    result = run_vcc("inspect", str(tmp_path / "nope"))
    assert result.returncode == 2 and "does not exist" in result.stderr


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.cards = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article" and "card" in (attrs.get("class") or ""):
            self.cards += 1
        for key in ("src", "poster"):
            if tag in ("img", "video") and attrs.get(key):
                self.sources.append(attrs[key])


def _parse(index: Path) -> _Sources:
    parser = _Sources()
    parser.feed(index.read_text())
    return parser


def test_report_is_whole_and_opens_from_files(mined, tmp_path):
    index = write_report(open_run(mined.out), tmp_path / "report")
    page = _parse(index)
    clips = pa.concat_tables(pq.read_table(f) for f in shard_files(mined.out))
    assert page.cards == clips.num_rows
    for src in page.sources:
        assert ":" not in src and not src.startswith("/"), src  # relative: works from file://
        assert (index.parent / src).is_file(), src
    first = clips.to_pylist()[0]
    assert (index.parent / "media" / "clips" / f"{first['clip_id']}.mp4").read_bytes() == first[
        "clip"
    ]
    assert sum(s.startswith("media/images/") for s in page.sources) == clips.num_rows
    for plot in ("similarity", "duration_s", "clips_per_image", "clips_per_video"):
        with Image.open(index.parent / "plots" / f"{plot}.png") as image:
            assert image.format == "PNG" and image.size == (560, 300)


def test_large_runs_are_sampled_and_a_report_replaces_the_last(mined, tmp_path):
    target = tmp_path / "report"
    write_report(open_run(mined.out), target, max_cards=4, seed=1)
    index = write_report(open_run(mined.out), target, max_cards=2, seed=1)
    again = write_report(open_run(mined.out), tmp_path / "other", max_cards=2, seed=1)
    assert _parse(index).cards == 2
    clips = sorted(p.name for p in (target / "media" / "clips").iterdir())
    assert len(clips) == 2  # nothing left from the earlier, larger report
    assert clips == sorted(p.name for p in (again.parent / "media" / "clips").iterdir())
    assert "2 cards: a sample (seed 1)" in index.read_text()


def test_report_refuses_a_folder_of_other_files(mined, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InspectError, match="not a vcc report"):
        write_report(open_run(mined.out), tmp_path)
    result = run_vcc("inspect", str(mined.out), "--html", str(tmp_path))
    assert result.returncode == 2 and "vcc: error:" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_report_plots_a_training_run_when_there_is_one(run_copy):
    # the files that training/train.py writes under OUT/train, in its format
    train = run_copy / "train"
    train.mkdir()
    steps = [
        {
            "step": s,
            "epoch": 0,
            "lr": 1e-3,
            "loss": 6.0 - 0.2 * s,
            "contrastive": 2.0 - 0.05 * s,
            "caption": 2.0 - 0.075 * s,
        }
        for s in range(1, 21)
    ]
    (train / "metrics.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    recall = {f"{d}_r@{k}": 0.1 * k / 10 + 0.3 for d in ("t2v", "v2t") for k in (1, 5, 10)}
    evaluation = {
        "clips": 4,
        **recall,
        "chance_r@5": 1.0,
        "bleu4": 0.1,
        "cider_d": 0.2,
        "captions": [{"clip_id": "x", "generated": "a cat", "true": "a tabby cat"}],
    }
    (train / "eval.json").write_text(json.dumps(evaluation))

    index = write_report(open_run(run_copy), run_copy / "report")
    assert "plots/loss.png" in _parse(index).sources
    assert "plots/recall.png" in _parse(index).sources
    assert "a tabby cat" in index.read_text()
    text = run_vcc("inspect", str(run_copy)).stdout
    assert "training: 20 steps, loss" in text
    assert "text->video R@1" in text
