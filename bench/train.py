"""Training: input and step throughput of the demo config's tiny VideoCoCa on CPU, and `vcc train`.

Three parts, all on the shards of the mined bench corpus (bench/out/e2e-run/shards; mined with
`vcc mine` by `e2e.run()` first when absent) and on `configs/train-demo.yaml` (model "tiny",
4 frames, 64 px, batch 8):

* input: `training.data.Preprocess` (what the Ray Data map task runs) in this process, batches
  of 8 rows, on rows with their JPEG `frames` and on the same rows without (decoded from the
  `clip` bytes with PyAV); plus, on the clip path, one alternative that converts only the picked
  frames to images (checked to give the same tensors), to show where that path's time goes;
* step: one optimizer step as `training.train.train_loop` does it on CPU (forward, CoCa loss,
  backward, gradient clipping, AdamW) for each adapter, and open_clip's own CoCa on the first
  frame of each clip (same text, decoder and loss), at torch threads 1 and 2, interleaved;
  FLOPs of one step are counted with torch's FlopCounterMode (matmuls and attention);
* vcc train: the real command on the same shards, `--set optim.max_steps=40`, in a new session;
  steps are timed from outside by watching metrics.jsonl grow, so Ray's start-up, the first
  batch and the evaluation afterwards are left out of the steady rate.

`python bench/train.py --gpu` instead measures the step of configs/videococa-b32.yaml's model
(random weights, bf16 autocast) on CUDA and its MFU; it exits with a message without a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from common import BENCH_DIR, OUT_DIR, Interleaved, busy_cpu_s, rate
from PIL import Image

from mining.shards import shard_paths
from training.config import TrainConfig, load_train_config
from training.data import COLUMNS, Preprocess, _pick
from training.model import ADAPTERS, build_model

REPO = BENCH_DIR.parent
DEMO_CONFIG = REPO / "configs" / "train-demo.yaml"
GPU_CONFIG = REPO / "configs" / "videococa-b32.yaml"
SHARDS = OUT_DIR / "e2e-run" / "shards"
VCC_OUT = OUT_DIR / "train-run"

INPUT_REPEATS = 3
CLIP_ROWS = 8  # rows decoded from clip bytes per repeat (about 0.3-0.6 s each on this machine)
THREADS = (1, 2)
STEP_REPEATS = 5
STEP_MIN_REPEATS = 3
STEP_BUDGET_S = 30.0  # per thread setting: no round starts past this after the 3rd
VCC_STEPS = 40
VCC_TIMEOUT_S = 300
POLL_S = 0.02

# dense bf16 tensor-core peaks (no sparsity), for MFU; other GPUs need --peak-tflops
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.5,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
}


def demo_config() -> TrainConfig:
    return load_train_config(str(DEMO_CONFIG))


def shards() -> list[str]:
    """The bench corpus's shards; mined first (`vcc mine`, as bench/e2e.py runs it) if absent."""
    files = shard_paths(SHARDS)
    if not files:
        import e2e

        e2e.run()
        files = shard_paths(SHARDS)
    if not files:
        raise RuntimeError(f"no shards under {SHARDS} after mining")
    return files


def _preprocess(cfg: TrainConfig) -> Preprocess:
    _, pre, _ = build_model(cfg.model)
    return Preprocess(cfg.model.name, cfg.model.frames, pre["image_size"], pre["mean"], pre["std"])


def _pick_then_convert(prep: Preprocess, batch: pa.Table) -> dict[str, np.ndarray]:
    """Preprocess's clip path, but only the picked frames become PIL images."""
    videos = []
    for data in batch["clip"].to_pylist():
        with av.open(io.BytesIO(data)) as container:
            frames = list(container.decode(container.streams.video[0]))
        images = [frames[i].to_image() for i in _pick(len(frames), prep.frames)]
        videos.append(prep._to_tensor(images))
    text = prep.tokenizer(batch["caption"].to_pylist()).numpy().astype(np.int64)
    return {"video": np.stack(videos).astype(np.float32), "text": text}


def _batches(fn: Callable[[pa.Table], Any], table: pa.Table, size: int) -> Callable[[], int]:
    def go() -> int:
        for start in range(0, len(table), size):
            fn(table.slice(start, size))
        return len(table)

    return go


def bench_input(cfg: TrainConfig, table: pa.Table) -> dict[str, Any]:
    """Clips per second (wall) and per CPU-second through Preprocess, JPEG path vs clip path."""
    torch.set_num_threads(1)
    prep = _preprocess(cfg)
    size = cfg.data.batch_size
    step = max(1, len(table) // CLIP_ROWS)
    clip_rows = table.take(list(range(0, len(table), step))[:CLIP_ROWS]).drop_columns(["frames"])
    # warm-up (tokenizer load, PyAV and PIL first calls) and the check of the alternative
    prep(table.slice(0, 2))
    reference = prep(clip_rows.slice(0, 2))
    alternative = _pick_then_convert(prep, clip_rows.slice(0, 2))
    same = bool(
        np.array_equal(reference["video"], alternative["video"])
        and np.array_equal(reference["text"], alternative["text"])
    )
    frames_per_row = [len(f) for f in table["frames"].to_pylist()]
    clip_frames = []
    for data in clip_rows["clip"].to_pylist():
        with av.open(io.BytesIO(data)) as container:
            clip_frames.append(container.streams.video[0].frames)

    variants = {
        "jpeg": _batches(prep, table, size),
        "clip": _batches(prep, clip_rows, size),
        "clip_pick_then_convert": _batches(lambda b: _pick_then_convert(prep, b), clip_rows, size),
    }
    inter = Interleaved().run(variants, repeats=INPUT_REPEATS)
    out: dict[str, Any] = {}
    for name in variants:
        n = inter.result(name)
        out[name] = {
            "clips": n,
            "clips_per_s": rate(n, inter.wall(name)),
            "clips_per_cpu_s": rate(n, inter.cpu(name)),
            **inter.summary(name),
        }
    out["ratio_jpeg_vs_clip_per_cpu"] = round(
        out["jpeg"]["clips_per_cpu_s"] / out["clip"]["clips_per_cpu_s"], 2
    )
    out["ratio_jpeg_vs_clip_wall"] = round(
        out["jpeg"]["clips_per_s"] / out["clip"]["clips_per_s"], 2
    )
    out["ratio_pick_then_convert_vs_clip_per_cpu"] = round(
        out["clip_pick_then_convert"]["clips_per_cpu_s"] / out["clip"]["clips_per_cpu_s"], 2
    )
    out["pick_then_convert_same_tensors"] = same
    out["jpeg_frames_per_row"] = sorted(set(frames_per_row))
    out["jpeg_frame_size"] = list(Image.open(io.BytesIO(table["frames"][0][0].as_py())).size)
    out["clip_frames_per_row_median"] = statistics.median(clip_frames)
    out["clip_size"] = [int(table["width"][0].as_py()), int(table["height"][0].as_py())]
    out["batch_size"] = size
    out["torch_threads"] = 1
    out["contention"] = inter.contention()
    return out


class _Stepper:
    """One training step of a model on a fixed batch, as train_loop runs it (without DDP)."""

    def __init__(self, model, forward: Callable[[], dict], loss_fn, cfg: TrainConfig) -> None:
        self.model = model
        self.forward = forward
        self.loss_fn = loss_fn
        self.grad_clip = cfg.optim.grad_clip
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self) -> float:
        losses = self.loss_fn(self.forward())
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return float(losses["loss"].detach())


def _steppers(
    cfg: TrainConfig, video: torch.Tensor, text: torch.Tensor, adapters: tuple[str, ...]
) -> dict[str, _Stepper]:
    """A VideoCoCa step per adapter, and the plain image CoCa step on each clip's first frame."""
    steppers = {}
    for adapter in adapters:
        torch.manual_seed(cfg.data.seed)
        model, _, _ = build_model(dataclasses.replace(cfg.model, adapter=adapter), video.device)
        model.train()
        steppers[adapter] = _Stepper(model, lambda m=model: m(video, text), model.make_loss(), cfg)

    torch.manual_seed(cfg.data.seed)
    wrapper, _, _ = build_model(cfg.model, video.device)  # its .coca is open_clip's CoCa
    coca = wrapper.coca.train()
    images = video[:, 0].contiguous()

    def image_forward() -> dict:
        # open_clip's own forward on images; the logits shift is the one VideoCoCa.forward does,
        # so that text tower, decoder and loss do the same work in both
        out = coca(images, text, output_labels=False)
        out["logits"] = out["logits"][:, :-1]
        out["labels"] = text[:, 1:]
        return out

    steppers["image"] = _Stepper(coca, image_forward, wrapper.make_loss(), cfg)
    return steppers


def count_flops(fn: Callable[[], Any]) -> int:
    """Matmul/conv/attention FLOPs of one call (forward and backward), by FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def bench_step(cfg: TrainConfig, table: pa.Table) -> dict[str, Any]:
    """Clips per second of the training step per adapter and of the image CoCa, threads 1 and 2."""
    prep = _preprocess(cfg)
    batch = prep(table.slice(0, cfg.data.batch_size))
    video = torch.from_numpy(batch["video"])
    text = torch.from_numpy(batch["text"])
    B, T = video.shape[:2]
    torch.set_num_threads(1)
    steppers = _steppers(cfg, video, text, ADAPTERS)
    flops = {name: count_flops(fn) for name, fn in steppers.items()}  # also a first warm-up

    out: dict[str, Any] = {
        "batch_size": B,
        "frames": T,
        "image_size": list(video.shape[-2:]),
        "text_length": text.shape[1],
        "parameters": {
            n: sum(p.numel() for p in s.model.parameters()) for n, s in steppers.items()
        },
        "gflop_per_step": {n: round(f / 1e9, 3) for n, f in flops.items()},
        "threads": {},
    }
    for threads in THREADS:
        torch.set_num_threads(threads)
        inter = Interleaved()
        for fn in steppers.values():  # warm-up at this thread count
            fn()
        started = time.perf_counter()
        rounds = 0
        while rounds < STEP_REPEATS and (
            rounds < STEP_MIN_REPEATS or time.perf_counter() - started < STEP_BUDGET_S
        ):
            inter.run(steppers, repeats=1)
            rounds += 1
        per: dict[str, Any] = {}
        for name in steppers:
            wall = inter.wall(name)
            frames = B if name == "image" else B * T
            best = min(x.wall_s for x in inter.samples[name])
            per[name] = {
                "clips_per_s": rate(B, wall),
                "frames_per_s": rate(frames, wall),
                "gflop_per_s": round(flops[name] / wall / 1e9, 2),
                "clips_per_s_best": rate(B, best),  # the least disturbed step
                "wall_s_min": round(best, 4),
                **inter.summary(name),
            }
        image = per["image"]
        for name in ADAPTERS:
            per[name]["ratio_vs_image_per_clip"] = round(
                per[name]["clips_per_s"] / image["clips_per_s"], 2
            )
            per[name]["ratio_vs_image_per_frame"] = round(
                per[name]["frames_per_s"] / image["frames_per_s"], 2
            )
        per["rounds"] = rounds
        per["contention"] = inter.contention()
        out["threads"][str(threads)] = per
    one, two = out["threads"]["1"], out["threads"]["2"]
    out["ratio_2_vs_1_threads"] = {
        name: round(two[name]["clips_per_s"] / one[name]["clips_per_s"], 2) for name in steppers
    }
    torch.set_num_threads(1)
    return out


def _metric_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written
    return lines


def _written_at(path: Path, started: float) -> float | None:
    try:
        return round(path.stat().st_mtime - started, 2)
    except OSError:
        return None


def bench_vcc_train(cfg: TrainConfig, shard_files: list[str]) -> dict[str, Any]:
    """The real `vcc train` (demo config, 40 steps): steady clips/s and what surrounds it."""
    from e2e import SessionCpu

    shutil.rmtree(VCC_OUT, ignore_errors=True)
    VCC_OUT.mkdir(parents=True)
    shards_dir = str(Path(shard_files[0]).parent)
    command = [
        str(REPO / ".venv" / "bin" / "vcc"),
        "train",
        "--shards",
        shards_dir,
        "--out",
        str(VCC_OUT),
        "--config",
        str(DEMO_CONFIG),
        "--set",
        f"optim.max_steps={VCC_STEPS}",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # embedded Ray, always
    metrics = VCC_OUT / "train" / "metrics.jsonl"
    log_path = VCC_OUT / "vcc-train.log"
    seen: dict[int, float] = {}  # step -> seconds after the start when its line appeared
    busy0, t0, started = busy_cpu_s(), time.perf_counter(), time.time()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        sampler = SessionCpu(process.pid).start()
        while process.poll() is None:
            now = time.perf_counter() - t0
            for line in _metric_lines(metrics):
                seen.setdefault(line["step"], now)
            if now > VCC_TIMEOUT_S:
                process.kill()
                break
            time.sleep(POLL_S)
        process.wait()
    wall = time.perf_counter() - t0
    sampler.stop_when_empty(20.0)
    busy = busy_cpu_s() - busy0
    log = log_path.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"vcc train failed (exit {process.returncode}):\n{log[-3000:]}")

    lines = _metric_lines(metrics)
    batch = cfg.data.batch_size
    first, last = min(seen), max(seen)
    steady_s = seen[last] - seen[first]
    cpu_s = sampler.total_s()
    logged = [x for x in lines if x["step"] % cfg.run.log_every == 0 or x["step"] == last]
    return {
        "command": " ".join(command),
        "steps": len(lines),
        "wall_s": round(wall, 2),
        # config.json: after imports and Ray start; rank-0.pid: the Train worker is up
        "config_written_at_s": _written_at(VCC_OUT / "train" / "config.json", started),
        "worker_started_at_s": _written_at(VCC_OUT / "train" / "workers" / "rank-0.pid", started),
        "first_step_at_s": round(seen[first], 2),
        "last_step_at_s": round(seen[last], 2),
        "after_last_step_s": round(wall - seen[last], 2),
        "eval_written_at_s": _written_at(VCC_OUT / "train" / "eval.json", started),
        "steady_clips_per_s": rate((last - first) * batch, steady_s),
        "steady_steps": last - first,
        "metrics_clips_per_s": {str(x["step"]): round(x["clips_per_s"], 2) for x in logged},
        "metrics_data_wait": {str(x["step"]): round(x["data_wait"], 3) for x in logged},
        "epochs": lines[-1]["epoch"] + 1 if lines else 0,
        "loss_first_last": [round(lines[0]["loss"], 3), round(lines[-1]["loss"], 3)],
        "cpu_s_session_sampled": round(cpu_s, 2),
        "clips_per_cpu_s_whole_run": rate(len(lines) * batch, cpu_s),
        "other_cores_mean": round(max(0.0, busy - cpu_s) / wall, 2),
        "log_steps": [x for x in log.splitlines() if "| loss" in x or "training on" in x],
    }


def run(vcc_train: bool = True) -> dict[str, Any]:
    cfg = demo_config()
    files = shards()
    table = pa.concat_tables(pq.read_table(f, columns=COLUMNS + ["width", "height"]) for f in files)
    result: dict[str, Any] = {
        "config": str(DEMO_CONFIG.relative_to(REPO)),
        "model": dataclasses.asdict(cfg.model),
        "shards": [str(Path(f).relative_to(REPO)) for f in files],
        "rows": len(table),
        "torch": torch.__version__,
        "open_clip": __import__("open_clip").__version__,
        "torch_default_threads": torch.get_num_threads(),
    }
    threads = torch.get_num_threads()
    try:
        result["input"] = bench_input(cfg, table)
        result["step"] = bench_step(cfg, table)
    finally:
        torch.set_num_threads(threads)
    if vcc_train:
        result["vcc_train"] = bench_vcc_train(cfg, files)
        attn = result["step"]["threads"]["1"]["attn_pool"]["clips_per_s"]
        result["vcc_train"]["ratio_steady_vs_step_attn_pool_1_thread"] = round(
            result["vcc_train"]["steady_clips_per_s"] / attn, 2
        )
    return result


# ---- GPU (not run on the CPU-only machine the results in RESULTS.md come from) ----


def _peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def run_gpu(
    steps: int = 10,
    peak_tflops: float | None = None,
    device: str = "cuda",
    config: Path = GPU_CONFIG,
) -> dict[str, Any]:
    """Step time and MFU of `config`'s model (random weights, bf16 autocast) per adapter.

    `device="cpu"` (with configs/train-demo.yaml) only smoke-tests this code path.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (torch.cuda.is_available() is False): GPU figures skipped")
        return {"skipped": "torch.cuda.is_available() is False"}
    cuda = dev.type == "cuda"
    cfg = load_train_config(str(config))
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    peak = peak_tflops or _peak_tflops(name)
    B, T = cfg.data.batch_size, cfg.model.frames
    out: dict[str, Any] = {
        "config": str(Path(config).resolve().relative_to(REPO)),
        "device": name,
        "peak_bf16_tflops": peak,
        "batch_size": B,
        "frames": T,
        "tuning": cfg.model.tuning,
        "torch": torch.__version__,
        "adapters": {},
    }
    for adapter in ADAPTERS:
        model_cfg = dataclasses.replace(cfg.model, adapter=adapter, pretrained=None)
        torch.manual_seed(0)
        model, pre, tokenizer = build_model(model_cfg, dev)
        model.train()
        size = pre["image_size"]
        video = torch.randn(B, T, 3, size, size, device=dev)
        captions = [f"clip {i}: a dog runs along a beach at sunset, waves behind" for i in range(B)]
        text = tokenizer(captions).to(dev)
        loss_fn = model.make_loss()

        def forward(m=model, v=video, t=text) -> dict:
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                return m(v, t)

        def loss(o, fn=loss_fn) -> dict:
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                return fn(o)

        stepper = _Stepper(model, forward, loss, cfg)
        flops = count_flops(stepper)
        for _ in range(3):
            stepper()
        if cuda:
            torch.cuda.synchronize(dev)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            stepper()  # returns the loss as a float, which waits for the GPU
            if cuda:
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
        step_s = statistics.median(times)
        out["adapters"][adapter] = {
            "step_s_median": round(step_s, 4),
            "step_s_all": [round(x, 4) for x in times],
            "clips_per_s": rate(B, step_s),
            "tflop_per_step": round(flops / 1e12, 3),
            "achieved_tflops": round(flops / step_s / 1e12, 2),
            "mfu": round(flops / step_s / (peak * 1e12), 3) if peak else None,
        }
        if cuda:
            out["adapters"][adapter]["max_memory_gib"] = round(
                torch.cuda.max_memory_allocated(dev) / 2**30, 2
            )
        del model, stepper, video, text
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
    if peak is None:
        print(f"no bf16 peak known for {name!r}: pass --peak-tflops for MFU")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the CUDA bf16 step and MFU instead")
    parser.add_argument("--steps", type=int, default=10, help="--gpu: timed steps per adapter")
    parser.add_argument("--peak-tflops", type=float, help="--gpu: the GPU's dense bf16 peak")
    parser.add_argument(
        "--device", default="cuda", help="--gpu: device (cpu only smoke-tests the code path)"
    )
    parser.add_argument(
        "--config", default=str(GPU_CONFIG), help="--gpu: training config of the model"
    )
    parser.add_argument("--no-vcc-train", action="store_true", help="skip the real `vcc train`")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if args.gpu:
        result = run_gpu(args.steps, args.peak_tflops, args.device, Path(args.config))
    else:
        result = run(not args.no_vcc_train)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
