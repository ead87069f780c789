"""Ray Train on mined shards: a 2-worker CPU (gloo) run, resume after a worker is killed, and
the training input (split by video, decoded frames, tokens)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from training.config import load_train_config
from training.data import Preprocess, frames_of, read_split, split_videos
from training.report import read_metrics

TINY = [
    "model.name=tiny",
    "model.frames=2",
    "data.batch_size=2",
    "data.eval_fraction=0.5",
    "optim.warmup_steps=2",
    "run.log_every=2",
    "run.eval_captions=2",
    "ray.num_cpus=2",
    # two workers on two CPUs must leave room for the input tasks
    "scaling.cpus_per_worker=0.5",
    "data.preprocess_cpus=0.5",
]


def test_split_is_by_video_and_stable():
    videos = [f"v{i}" for i in range(10)]
    held = split_videos(videos + videos, 0.2)
    assert len(held) == 2 and held <= set(videos)
    assert split_videos(list(reversed(videos)), 0.2) == held
    assert split_videos(["only"], 0.5) == set()


def test_input_rows_decode_to_frames_and_tokens(mined, ray_session):
    train_ds, eval_ds, eval_videos, train_videos = read_split(str(mined.out), 0.5)
    assert eval_videos and train_videos and not set(eval_videos) & set(train_videos)
    train_rows = train_ds.take_all()
    eval_rows = eval_ds.take_all()
    assert {r["video_id"] for r in train_rows} == set(train_videos)
    assert {r["video_id"] for r in eval_rows} == set(eval_videos)

    row = train_rows[0]
    from_jpegs = frames_of(row["frames"], None, 4)
    from_clip = frames_of(None, row["clip"], 4)
    assert len(from_jpegs) == len(from_clip) == 4
    prep = Preprocess("tiny", 3, 32, [0.5] * 3, [0.25] * 3)
    import pyarrow as pa

    batch = prep(pa.Table.from_pylist(train_rows[:2]))
    assert batch["video"].shape == (2, 3, 3, 32, 32)
    assert batch["video"].dtype == np.float32
    assert batch["text"].shape[0] == 2 and batch["text"].dtype == np.int64
    assert (batch["text"][:, 0] > 0).all()


def test_two_worker_gloo_run_trains_and_evaluates(mined, tmp_path, ray_session):
    from training.train import train

    cfg = load_train_config(
        overrides=[
            *TINY,
            "optim.max_steps=6",
            "run.checkpoint_every=3",
            "scaling.num_workers=2",
            "run.caption_method=beam",
        ]
    )
    report = train(str(mined.out), tmp_path, cfg)
    records = read_metrics(tmp_path / "train")
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all(np.isfinite(r["loss"]) and r["contrastive"] > 0 for r in records)
    assert report["clips"] > 0 and 0.0 <= report["t2v_r@5"] <= 1.0
    assert len(report["captions"]) == min(2, report["clips"])
    saved = json.loads((tmp_path / "train" / "eval.json").read_text())
    assert saved["t2v_r@1"] == report["t2v_r@1"]


@pytest.mark.slow  # about 5 minutes on 2 cores: Ray Train restarts the whole worker group
def test_killed_worker_resumes_from_its_checkpoint(mined, tmp_path):
    steps = 24
    args = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "train",
        "--shards",
        str(mined.out),
        "--out",
        str(tmp_path),
    ]
    for override in [
        *TINY,
        f"optim.max_steps={steps}",
        "run.checkpoint_every=4",
        "scaling.num_workers=2",
        "run.max_failures=2",
    ]:
        args += ["--set", override]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    pid_file = tmp_path / "train" / "workers" / "rank-1.pid"
    killed_pid = None
    deadline = time.monotonic() + 300
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            records = read_metrics(tmp_path / "train")
            if records and records[-1]["step"] >= 10 and pid_file.exists():
                killed_pid = int(pid_file.read_text())
                os.kill(killed_pid, signal.SIGKILL)
                break
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed_pid is not None, "training ended before a worker could be killed"
    assert proc.returncode == 0, output[-3000:]

    lines = [
        json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().split("\n") if x
    ]
    steps_logged = [r["step"] for r in lines]
    assert max(steps_logged) == steps
    assert len(steps_logged) > len(set(steps_logged)), "steps after the checkpoint run twice"
    assert int(pid_file.read_text()) != killed_pid, "rank 1 runs in a new process"
    assert (tmp_path / "train" / "eval.json").exists()


@pytest.mark.parametrize("bad", ["model.adapter=conv3d", "optim.max_steps=0"])
def test_bad_training_config_is_refused(bad):
    from pipeline.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match=bad.split("=")[0].split(".")[-1]):
        load_train_config(overrides=[bad])
