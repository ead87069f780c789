"""`vcc demo`: generate the demo corpus offline, mine it, and score the clips against its truth."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from mining.atomic import atomic_path
from mining.shards import read_shards
from pipeline.config import MineConfig
from pipeline.demo_corpus import (
    IMAGES_FILE,
    TRUTH_FILE,
    VIDEOS_DIR,
    CorpusSpec,
    generate_corpus,
    load_truth,
    score_clips,
)
from pipeline.httpserver import FileServer
from pipeline.mine import mine
from training.config import TrainConfig

log = logging.getLogger(__name__)

# what `make demo` must reach with the default embedder and settings
TARGETS = {"precision": 0.95, "recall": 0.9, "purity": 0.9}

# the tiny VideoCoCa that the demo trains when no --config is given
DEMO_TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-demo.yaml"


def publish_corpus(corpus: Path) -> Path:
    """Each caption image as a JPEG file under corpus/images/, beside videos/, as a web host
    has them; the corpus folder is then the site to serve."""
    folder = corpus / "images"
    if not folder.is_dir():
        table = pq.read_table(corpus / IMAGES_FILE, columns=["key", "jpg"])
        staging = corpus / ".images.tmp-publish"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for key, jpg in zip(table["key"].to_pylist(), table["jpg"].to_pylist()):
            (staging / f"{key}.jpg").write_bytes(jpg)
        os.replace(staging, folder)
    return corpus


def write_url_lists(corpus: Path, server: FileServer) -> tuple[Path, Path]:
    """images.csv (url, caption, key) and videos.csv (url, video_id) naming server's URLs."""
    table = pq.read_table(corpus / IMAGES_FILE, columns=["key", "caption"])
    images = pa.table(
        {
            "url": [server.url(f"images/{k}.jpg") for k in table["key"].to_pylist()],
            "caption": table["caption"],
            "key": table["key"],
        }
    )
    videos = sorted((corpus / VIDEOS_DIR).iterdir())
    video_list = pa.table(
        {
            "url": [server.url(f"{VIDEOS_DIR}/{v.name}") for v in videos],
            "video_id": [v.stem for v in videos],
        }
    )
    paths = corpus / "images.csv", corpus / "videos.csv"
    for path, listed in zip(paths, (images, video_list)):
        with atomic_path(path) as tmp:
            pcsv.write_csv(listed, tmp)
    return paths


def demo_port(out: Path) -> int:
    """A loopback port that is the same for every run on one OUT, so that its URLs are too
    (a rerun then resumes instead of fetching again)."""
    digest = hashlib.sha1(str(out.resolve()).encode()).digest()
    return 20000 + int.from_bytes(digest[:4], "big") % 20000


def run_demo(
    out: Path, cfg: MineConfig, train_cfg: TrainConfig, small: bool = False, mine_only: bool = False
) -> dict:
    """Generate (or reuse) the corpus under out/corpus, mine into out/run, score, then train.

    The corpus is served on 127.0.0.1 while it is mined, and mining takes it as URL lists:
    images through img2dataset, videos through yt-dlp, as a run over a web corpus does.
    """
    corpus = out / "corpus"
    if not (corpus / TRUTH_FILE).exists():
        started = time.perf_counter()
        generate_corpus(corpus, CorpusSpec.small() if small else CorpusSpec())
        log.info(
            "generated the demo corpus in %.1fs under %s", time.perf_counter() - started, corpus
        )
    site = publish_corpus(corpus)
    with FileServer(site, port=demo_port(out)) as server:
        images, videos = write_url_lists(corpus, server)
        # the corpus is on this machine: its loopback URLs are fetched on purpose
        cfg = dataclasses.replace(cfg, fetch=dataclasses.replace(cfg.fetch, allow_private=True))
        result = mine(str(images), str(videos), str(out / "run"), cfg)
    clips = read_shards(result.out, columns=["video_id", "start_s", "end_s", "image_key"])
    score = score_clips(clips, load_truth(corpus / TRUTH_FILE))
    passed = all(score[k] >= v for k, v in TARGETS.items())
    print(f"shards: {result.out / 'shards'} ({len(result.shards)} files, {score['clips']} clips)")
    print(
        f"mining: precision {score['precision']:.3f}  recall {score['recall']:.3f}  "
        f"purity {score['purity']:.3f}  (targets: precision >= {TARGETS['precision']}, "
        f"recall >= {TARGETS['recall']}, purity >= {TARGETS['purity']})"
    )
    if not passed:
        print("demo: mining is below target")
    report = {"score": score, "passed": passed, "stats": result.stats}
    if mine_only:
        report["report"] = write_inspect_report(result.out)
        return report

    from training.report import loss_trend, read_metrics, summarize_training
    from training.train import train

    evaluation = train(str(result.out), result.out, train_cfg)
    print(summarize_training(evaluation, result.out / "train"))
    first, last = loss_trend(read_metrics(result.out / "train"))
    learned = last < first and evaluation.get("t2v_r@5", 0.0) > evaluation.get("chance_r@5", 1.0)
    if not learned:
        print("demo: the model did not learn (loss not falling or recall@5 not above chance)")
    report.update({"training": evaluation, "passed": passed and learned})
    report["report"] = write_inspect_report(result.out)
    return report


def write_inspect_report(run: Path) -> Path:
    """`vcc inspect --html` on the demo's run: OUT/run/report/index.html; prints its path."""
    from pipeline.inspect import open_run
    from pipeline.report_html import write_report

    path = write_report(open_run(run), run / "report")
    print(f"report: {path} (open it in a browser; `vcc inspect {run}` prints the summary)")
    return path
