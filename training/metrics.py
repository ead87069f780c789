"""Evaluation metrics: text<->video retrieval recall@k, and BLEU-4 / CIDEr-D for captions."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np


def retrieval_recall(
    sim: np.ndarray, video_of_text: Sequence[int] | None = None, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k both ways from a [texts, videos] similarity matrix.

    Text i's right video is `video_of_text[i]` (default: video i). A video's right texts are
    every text whose right video it is. Returns t2v_r@k and v2t_r@k in [0, 1].
    """
    n_text, n_video = sim.shape
    target = np.arange(n_text) if video_of_text is None else np.asarray(video_of_text)
    out: dict[str, float] = {}

    # rank of the right video for each text: how many videos score strictly higher
    right = sim[np.arange(n_text), target]
    t2v_rank = (sim > right[:, None]).sum(axis=1)

    # for each video, the best rank among its right texts
    v2t_rank = np.full(n_video, n_text, dtype=np.int64)
    for video in range(n_video):
        texts = np.flatnonzero(target == video)
        if len(texts) == 0:
            continue
        scores = sim[:, video]
        v2t_rank[video] = min(int((scores > scores[t]).sum()) for t in texts)
    has_text = np.isin(np.arange(n_video), target)
    for k in ks:
        out[f"t2v_r@{k}"] = float((t2v_rank < k).mean())
        out[f"v2t_r@{k}"] = float((v2t_rank[has_text] < k).mean()) if has_text.any() else 0.0
    return out


def chance_recall(n_candidates: int, k: int) -> float:
    """Recall@k of a random ranking with one right answer among n_candidates."""
    return min(1.0, k / n_candidates) if n_candidates else 0.0


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu4(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (uniform weights, brevity penalty, closest reference length), in [0, 1]."""
    matches, totals = [0] * 4, [0] * 4
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references):
        c = tokenize(cand)
        rs = [tokenize(r) for r in refs]
        cand_len += len(c)
        ref_len += min((abs(len(r) - len(c)), len(r)) for r in rs)[1] if rs else 0
        for n in range(1, 5):
            counts = _ngrams(c, n)
            best: Counter = Counter()
            for r in rs:
                best |= _ngrams(r, n)
            matches[n - 1] += sum(min(v, best[g]) for g, v in counts.items())
            totals[n - 1] += max(len(c) - n + 1, 0)
    if cand_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / 4
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return brevity * math.exp(log_precision)


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0
) -> float:
    """CIDEr-D (n = 1..4, tf-idf over the references, Gaussian length penalty, x10), corpus mean."""
    refs_tok = [[tokenize(r) for r in refs] for refs in references]
    n_docs = len(refs_tok)
    doc_freq: list[Counter] = [Counter() for _ in range(4)]
    for refs in refs_tok:
        for n in range(4):
            seen = set()
            for r in refs:
                seen |= set(_ngrams(r, n + 1))
            doc_freq[n].update(seen)
    log_docs = math.log(max(n_docs, 1.0))

    def vector(tokens: list[str], n: int) -> tuple[dict, float]:
        counts = _ngrams(tokens, n + 1)
        vec = {g: tf * (log_docs - math.log(max(1.0, doc_freq[n][g]))) for g, tf in counts.items()}
        return vec, math.sqrt(sum(v * v for v in vec.values()))

    scores = []
    for cand, refs in zip(candidates, refs_tok):
        c = tokenize(cand)
        total = 0.0
        for n in range(4):
            cvec, cnorm = vector(c, n)
            per_ref = []
            for r in refs:
                rvec, rnorm = vector(r, n)
                dot = sum(min(v, rvec[g]) * rvec[g] for g, v in cvec.items() if g in rvec)
                sim = dot / (cnorm * rnorm) if cnorm and rnorm else 0.0
                per_ref.append(sim * math.exp(-((len(c) - len(r)) ** 2) / (2 * sigma**2)))
            total += float(np.mean(per_ref)) if per_ref else 0.0
        scores.append(total / 4 * 10.0)
    return float(np.mean(scores)) if scores else 0.0
