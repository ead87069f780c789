"""`vcc demo`: generate the demo corpus offline, mine it, and score the clips against its truth."""

from __future__ import annotations

import logging
import time
from pathlib import Path

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
from pipeline.mine import mine
from training.config import TrainConfig

log = logging.getLogger(__name__)

# what `make demo` must reach with the default embedder and settings
TARGETS = {"precision": 0.95, "recall": 0.9, "purity": 0.9}

# the tiny VideoCoCa that the demo trains when no --config is given
DEMO_TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train-demo.yaml"


def run_demo(
    out: Path, cfg: MineConfig, train_cfg: TrainConfig, small: bool = False, mine_only: bool = False
) -> dict:
    """Generate (or reuse) the corpus under out/corpus, mine into out/run, score, then train."""
    corpus = out / "corpus"
    if not (corpus / TRUTH_FILE).exists():
        started = time.perf_counter()
        generate_corpus(corpus, CorpusSpec.small() if small else CorpusSpec())
        log.info(
            "generated the demo corpus in %.1fs under %s", time.perf_counter() - started, corpus
        )
    result = mine(str(corpus / IMAGES_FILE), str(corpus / VIDEOS_DIR), str(out / "run"), cfg)
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
    return report
