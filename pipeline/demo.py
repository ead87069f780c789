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

log = logging.getLogger(__name__)

# what `make demo` must reach with the default embedder and settings
TARGETS = {"precision": 0.95, "recall": 0.9, "purity": 0.9}


def run_demo(out: Path, cfg: MineConfig, small: bool = False) -> dict:
    """Generate (or reuse) the corpus under out/corpus, mine into out/run, and score."""
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
        f"precision {score['precision']:.3f}  recall {score['recall']:.3f}  "
        f"purity {score['purity']:.3f}  (targets: precision >= {TARGETS['precision']}, "
        f"recall >= {TARGETS['recall']}, purity >= {TARGETS['purity']})"
    )
    if not passed:
        print("demo: below target")
    return {"score": score, "passed": passed, "stats": result.stats}
