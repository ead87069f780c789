"""Typed training configuration (the `train:` section of a config file)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.config import RayConfig, digest, option
from training.model import ModelConfig


@dataclass
class DataConfig:
    batch_size: int = option(8, "clips per worker per step", min=1)
    eval_fraction: float = option(0.2, "share of videos held out for evaluation", min=0.0, max=0.9)
    seed: int = option(0, "seed of the split and of the model's initialisation")
    cache: bool = option(
        False,
        "preprocess the train split once and keep it in Ray's object store (small runs); "
        "off: stream it every epoch",
    )
    preprocess_cpus: float = option(
        1.0, "CPUs per input task that decodes frames and tokenises", min=0.1
    )


@dataclass
class OptimConfig:
    lr: float = option(5e-4, "peak learning rate (AdamW)", min=0.0)
    weight_decay: float = option(0.05, "AdamW weight decay", min=0.0)
    warmup_steps: int = option(10, "linear warm-up steps before the cosine decay", min=0)
    max_steps: int = option(200, "optimizer steps in the whole run", min=1)
    grad_clip: float = option(
        1.0, "clip the global gradient norm to this; 0 = no clipping", min=0.0
    )


@dataclass
class ScalingConfig:
    num_workers: int = option(1, "training workers (DDP ranks)", min=1)
    use_gpu: bool = option(False, "one GPU per worker, NCCL, bf16 autocast")
    cpus_per_worker: float = option(1.0, "CPUs each worker asks for", min=0.1)
    bf16: bool = option(True, "bf16 autocast on GPU (ignored on CPU)")


@dataclass
class RunConfig:
    checkpoint_every: int = option(50, "steps between checkpoints", min=1)
    keep_checkpoints: int = option(2, "checkpoints kept on storage", min=1)
    max_failures: int = option(
        3, "worker failures to recover from (from the last checkpoint)", min=0
    )
    log_every: int = option(10, "steps between log lines (metrics.jsonl gets every step)", min=1)
    eval_captions: int = option(8, "held-out clips to caption in the evaluation", min=0)
    caption_method: Literal["greedy", "beam"] = option(
        "greedy", "how evaluation captions are decoded: greedy or beam (4 beams)"
    )
    eval_batch_size: int = option(16, "clips per batch in the evaluation", min=1)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """What decides the trained model; resuming needs the same one."""
        data = self.to_dict()
        for placement in ("ray", "scaling"):
            data.pop(placement)
        return digest(data)


def load_train_config(path=None, overrides=(), unprefixed: str = "train") -> TrainConfig:
    """The `train:` section of a config file, with the overrides meant for it."""
    from pipeline.config import load_section

    return load_section(TrainConfig, "train", path, overrides, unprefixed)
