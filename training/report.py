"""Reading a training run back: the loss curve from metrics.jsonl and the evaluation."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(train_dir: str | Path) -> list[dict]:
    """One record per step; where a resume replayed steps, the later record wins."""
    path = Path(train_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def loss_trend(records: list[dict], window: int = 10) -> tuple[float, float]:
    """Mean loss of the first and of the last `window` steps."""
    losses = [r["loss"] for r in records]
    if not losses:
        return float("nan"), float("nan")
    window = max(1, min(window, len(losses) // 2 or 1))
    return sum(losses[:window]) / window, sum(losses[-window:]) / window


def summarize_training(report: dict, train_dir: str | Path) -> str:
    """A few lines for the terminal: loss falling, held-out recall against chance, captions."""
    records = read_metrics(train_dir)
    first, last = loss_trend(records)
    lines = [
        f"training: {len(records)} steps, loss {first:.3f} -> {last:.3f} "
        f"(mean of the first and last 10 steps)"
    ]
    if report.get("clips"):
        lines.append(
            f"held-out ({report['clips']} clips): text->video R@1 {report['t2v_r@1']:.2f} "
            f"R@5 {report['t2v_r@5']:.2f} R@10 {report['t2v_r@10']:.2f} "
            f"(chance R@5 {report['chance_r@5']:.2f}); video->text R@5 {report['v2t_r@5']:.2f}"
        )
    if "bleu4" in report:
        lines.append(f"captions: BLEU-4 {report['bleu4']:.3f}, CIDEr-D {report['cider_d']:.3f}")
        for sample in report["captions"][:3]:
            lines.append(f"  generated: {sample['generated']!r}  true: {sample['true']!r}")
    lines.append(
        f"metrics: {Path(train_dir) / 'metrics.jsonl'}; evaluation: {Path(train_dir) / 'eval.json'}"
    )
    return "\n".join(lines)
