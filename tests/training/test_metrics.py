"""Retrieval recall and caption metrics against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import bleu4, chance_recall, cider_d, retrieval_recall


def test_perfect_and_reversed_rankings():
    perfect = np.eye(4)
    r = retrieval_recall(perfect, ks=(1, 2))
    assert r == {"t2v_r@1": 1.0, "v2t_r@1": 1.0, "t2v_r@2": 1.0, "v2t_r@2": 1.0}
    reversed_ = -np.eye(4)  # the right video is always ranked last
    r = retrieval_recall(reversed_, ks=(1, 3, 4))
    assert r["t2v_r@1"] == 0.0 and r["t2v_r@3"] == 0.0 and r["t2v_r@4"] == 1.0


def test_recall_counts_ranks():
    sim = np.array(
        [
            [0.9, 0.1, 0.0],  # text 0 -> video 0: rank 0
            [0.8, 0.5, 0.1],  # text 1 -> video 1: rank 1
            [0.3, 0.2, 0.1],  # text 2 -> video 2: rank 2
        ]
    )
    r = retrieval_recall(sim, ks=(1, 2))
    assert r["t2v_r@1"] == pytest.approx(1 / 3)
    assert r["t2v_r@2"] == pytest.approx(2 / 3)
    # video 0's best text is 0 (rank 0); video 1: text 1 scores 0.5, text 2 0.2, text 0 0.1
    # -> rank 0; video 2: text 2 scores 0.1 = text 1, text 0 scores 0 -> rank 0 (ties do not count)
    assert r["v2t_r@1"] == pytest.approx(1.0)


def test_several_texts_per_video():
    sim = np.array([[0.1, 0.9], [0.9, 0.1], [0.2, 0.8]])
    r = retrieval_recall(sim, video_of_text=[1, 0, 1], ks=(1,))
    assert r["t2v_r@1"] == 1.0 and r["v2t_r@1"] == 1.0


def test_chance():
    assert chance_recall(20, 5) == 0.25
    assert chance_recall(3, 5) == 1.0


def test_bleu4_identity_and_disjoint():
    refs = [["a cat sits on the red mat today"]]
    assert bleu4(["a cat sits on the red mat today"], refs) == pytest.approx(1.0)
    assert bleu4(["dogs run far away in green fields"], refs) == 0.0


def test_bleu4_brevity_penalty():
    full = bleu4(["a cat sits on the red mat"], [["a cat sits on the red mat"]])
    short = bleu4(["a cat sits on the"], [["a cat sits on the red mat"]])
    assert full == pytest.approx(1.0)
    assert short == pytest.approx(np.exp(1 - 7 / 5))


def test_cider_prefers_the_right_caption():
    refs = [
        ["an astronaut in a white suit"],
        ["a cup of coffee on a table"],
        ["a rocket on the launch pad"],
    ]
    right = cider_d(
        [
            "an astronaut in a white suit",
            "a cup of coffee on a table",
            "a rocket on the launch pad",
        ],
        refs,
    )
    wrong = cider_d(
        [
            "a cup of coffee on a table",
            "a rocket on the launch pad",
            "an astronaut in a white suit",
        ],
        refs,
    )
    assert right > 5.0 and wrong < 0.5 * right
