"""VideoCoCa training on Ray Train: the per-worker loop, the trainer, and the evaluation after it.

Layout under OUT/train: Ray Train's run folder (checkpoints), metrics.jsonl (one line per step
from rank 0; after a resume the replayed steps appear again, the later line wins), eval.json,
config.json, and workers/rank-N.pid (which process each rank runs in).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from mining.atomic import write_json
from training.config import TrainConfig
from training.data import Preprocess, read_split
from training.metrics import bleu4, chance_recall, cider_d, retrieval_recall
from training.model import build_model

log = logging.getLogger(__name__)

RUN_NAME = "videococa"


class TrainMismatchError(RuntimeError):
    """OUT/train holds a run with another training config."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to zero at max_steps."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, o.max_steps - o.warmup_steps)
    return 0.5 * o.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _save_checkpoint(model, optimizer, step: int, epoch: int, batch_in_epoch: int):
    from ray.train import Checkpoint

    folder = tempfile.mkdtemp(prefix="vcc-ckpt-")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
        },
        os.path.join(folder, "state.pt"),
    )
    return Checkpoint.from_directory(folder)


def train_loop(config: dict[str, Any]) -> None:
    """What every Ray Train worker runs."""
    import ray.train
    import ray.train.torch

    cfg: TrainConfig = config["cfg"]
    out = Path(config["out"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    (out / "workers").mkdir(parents=True, exist_ok=True)
    (out / "workers" / f"rank-{rank}.pid").write_text(str(os.getpid()))
    device = ray.train.torch.get_device()
    use_bf16 = cfg.scaling.use_gpu and cfg.scaling.bf16

    torch.manual_seed(cfg.data.seed)  # the same initial weights on every rank
    model, _, _ = build_model(cfg.model, device=str(device))
    model.to(device)
    step, epoch, skip = 0, 0, 0
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(
                os.path.join(folder, "state.pt"), map_location="cpu", weights_only=False
            )
        model.load_state_dict(state["model"])
        step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        if rank == 0:
            log.info("resumed from step %d (epoch %d, batch %d)", step, epoch, skip)

    model.set_tuning(step)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    loss_fn = model.make_loss(rank=rank, world_size=world)

    def wrap(module):
        # DDP only tracks parameters that need grads when it is built, so rebuild on a change
        return ray.train.torch.prepare_model(
            module,
            move_to_device=False,
            parallel_strategy_kwargs={"find_unused_parameters": True},
        )

    ddp = wrap(model)
    shard = ray.train.get_dataset_shard("train")
    metrics_file = open(out / "metrics.jsonl", "a") if rank == 0 else None
    t_last = time.perf_counter()
    wait_s = compute_s = 0.0
    clips = 0
    last: dict[str, float] = {}
    while step < cfg.optim.max_steps:
        batch_in_epoch = 0
        fetch_start = time.perf_counter()
        for batch in shard.iter_torch_batches(
            batch_size=cfg.data.batch_size,
            drop_last=True,
            dtypes={"video": torch.float32, "text": torch.int64},
        ):
            if batch_in_epoch < skip:  # replaying the epoch up to the checkpoint's position
                batch_in_epoch += 1
                fetch_start = time.perf_counter()
                continue
            fetched = time.perf_counter()
            wait_s += fetched - fetch_start

            if model.set_tuning(step):
                ddp = wrap(model)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            video = batch["video"].to(device)
            text = batch["text"].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                outputs = ddp(video, text)
                losses = loss_fn(outputs)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.optim.grad_clip
                )
            optimizer.step()
            step += 1
            batch_in_epoch += 1
            clips += video.shape[0] * world
            compute_s += time.perf_counter() - fetched

            last = {
                "step": step,
                "epoch": epoch,
                "lr": lr_at(step - 1, cfg),
                **{k: float(v.detach()) for k, v in losses.items()},
            }
            if metrics_file is not None:
                elapsed = time.perf_counter() - t_last
                last["clips_per_s"] = clips / elapsed if elapsed > 0 else 0.0
                last["data_wait"] = wait_s / max(wait_s + compute_s, 1e-9)
                metrics_file.write(json.dumps(last) + "\n")
                metrics_file.flush()
                if step % cfg.run.log_every == 0 or step == cfg.optim.max_steps:
                    t_last, clips, wait_s, compute_s = time.perf_counter(), 0, 0.0, 0.0

            done = step >= cfg.optim.max_steps
            if step % cfg.run.checkpoint_every == 0 or done:
                checkpoint = (
                    _save_checkpoint(model, optimizer, step, epoch, batch_in_epoch)
                    if rank == 0
                    else None
                )
                ray.train.report(last, checkpoint=checkpoint)
            if done:
                break
            fetch_start = time.perf_counter()
        if batch_in_epoch == 0 and skip == 0:
            raise RuntimeError(
                f"worker {rank} got no full batch of {cfg.data.batch_size} clips: the train split "
                "is smaller than the batch size times the workers; lower data.batch_size"
            )
        epoch += 1
        skip = 0
    if metrics_file is not None:
        metrics_file.close()


def train(shards: str, out: str | Path, cfg: TrainConfig) -> dict[str, Any]:
    """Train on the shards under `shards`, into OUT/train; rerunning resumes the same run."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    train_dir = Path(out).resolve() / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    config_path = train_dir / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous.get("fingerprint") != cfg.fingerprint():
            raise TrainMismatchError(
                f"{train_dir} holds a run with another training config; use a new --out, or the "
                "same config to resume it (start from its weights with train.model.pretrained)"
            )
    write_json(
        config_path,
        {"fingerprint": cfg.fingerprint(), "config": cfg.to_dict(), "shards": str(shards)},
    )

    train_ds, eval_ds, eval_videos, train_videos = read_split(
        shards, cfg.data.eval_fraction, cfg.data.seed
    )
    _, pre, _ = build_model(cfg.model)
    prep = Preprocess(cfg.model.name, cfg.model.frames, pre["image_size"], pre["mean"], pre["std"])
    train_ds = train_ds.map_batches(
        prep,
        batch_format="pyarrow",
        batch_size=cfg.data.batch_size,
        num_cpus=cfg.data.preprocess_cpus,
    ).select_columns(["video", "text"])
    if cfg.data.cache:
        train_ds = train_ds.materialize()
    log.info(
        "training on %d videos, holding out %d: %s",
        len(train_videos),
        len(eval_videos),
        ", ".join(eval_videos),
    )

    s = cfg.scaling
    total_cpus = ray.cluster_resources().get("CPU", 0)
    if total_cpus - s.num_workers * s.cpus_per_worker < cfg.data.preprocess_cpus:
        raise ValueError(
            f"{s.num_workers} workers x {s.cpus_per_worker} CPUs leave less than "
            f"data.preprocess_cpus={cfg.data.preprocess_cpus} of the cluster's {total_cpus:g} CPUs "
            "for the input pipeline, which would stall: lower scaling.cpus_per_worker or "
            "data.preprocess_cpus, or add CPUs"
        )
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"cfg": cfg, "out": str(train_dir)},
        scaling_config=ScalingConfig(
            num_workers=s.num_workers,
            use_gpu=s.use_gpu,
            resources_per_worker={"CPU": s.cpus_per_worker, **({"GPU": 1} if s.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(train_dir),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
        ),
        datasets={"train": train_ds},
    )
    stop = threading.Event()
    follower = threading.Thread(target=_follow_metrics, args=(train_dir, cfg, stop), daemon=True)
    follower.start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
        follower.join(timeout=5)
    if result.checkpoint is None:
        raise RuntimeError(f"training ended without a checkpoint: {result.error}")
    report = evaluate(result.checkpoint, eval_ds, prep, cfg)
    report.update(
        {"steps": cfg.optim.max_steps, "train_videos": train_videos, "eval_videos": eval_videos}
    )
    write_json(train_dir / "eval.json", report)
    return report


def format_step(record: dict[str, Any]) -> str:
    """The readable line of one step's metrics."""
    return (
        f"step {record['step']} | loss {record['loss']:.4f} "
        f"(contrastive {record['contrastive']:.4f}, caption {record['caption']:.4f}) | "
        f"lr {record['lr']:.2e} | {record.get('clips_per_s', 0):.1f} clips/s | "
        f"data wait {100 * record.get('data_wait', 0):.0f}%"
    )


def _follow_metrics(train_dir: Path, cfg: TrainConfig, stop: threading.Event) -> None:
    """Driver-side progress: a log line every `log_every` steps, read from metrics.jsonl."""
    path = train_dir / "metrics.jsonl"
    offset = path.stat().st_size if path.exists() else 0
    while not stop.wait(1.0):
        if not path.exists():
            continue
        with open(path) as fh:
            fh.seek(offset)
            chunk = fh.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        offset += len(complete.encode())
        for line in complete.splitlines():
            record = json.loads(line)
            if record["step"] % cfg.run.log_every == 0 or record["step"] == cfg.optim.max_steps:
                log.info(format_step(record))


def evaluate(checkpoint, eval_ds, prep: Preprocess, cfg: TrainConfig) -> dict[str, Any]:
    """Held-out text<->video recall@1/5/10, and captions for a few clips with BLEU-4 and CIDEr-D."""
    model, _, tokenizer = build_model(cfg.model)
    with checkpoint.as_directory() as folder:
        state = torch.load(os.path.join(folder, "state.pt"), map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()

    video_embs, text_embs, captions, clip_ids, videos = [], [], [], [], []
    rows = eval_ds.map_batches(
        lambda b: {**prep(b), "caption": np.array(b["caption"].to_pylist(), dtype=object)},
        batch_format="pyarrow",
        batch_size=cfg.run.eval_batch_size,
    )
    with torch.inference_mode():
        for batch in rows.iter_batches(batch_size=cfg.run.eval_batch_size, batch_format="numpy"):
            video = torch.from_numpy(np.array(batch["video"]))
            video_embs.append(model.encode_video(video).numpy())
            text_embs.append(model.encode_text(torch.from_numpy(np.array(batch["text"]))).numpy())
            captions.extend(batch["caption"].tolist())
            clip_ids.extend(batch["clip_id"].tolist())
            wanted = cfg.run.eval_captions - sum(len(x) for x in videos)
            if wanted > 0:
                videos.append(video[:wanted])
    if not video_embs:
        return {
            "clips": 0,
            "note": "no held-out clips: raise data.eval_fraction or mine more videos",
        }
    v = np.concatenate(video_embs)
    t = np.concatenate(text_embs)
    report: dict[str, Any] = {"clips": len(captions), **retrieval_recall(t @ v.T)}
    report["chance_r@5"] = chance_recall(len(captions), 5)

    if videos:
        sample = torch.cat(videos)
        with torch.inference_mode():
            generated = model.decode_tokens(model.generate(sample, method=cfg.run.caption_method))
        truth = captions[: len(generated)]
        report["captions"] = [
            {"clip_id": c, "generated": g, "true": r} for c, g, r in zip(clip_ids, generated, truth)
        ]
        report["bleu4"] = bleu4(generated, [[r] for r in truth])
        report["cider_d"] = cider_d(generated, [[r] for r in truth])
    return report
