"""mining.select: shots, choosing spans from matches, planning shard groups, clip ids."""

from __future__ import annotations

import pytest

from mining.select import (
    VideoShots,
    bound_span,
    clip_id,
    needs_refinement,
    plan_groups,
    select_spans,
)

# shot 0: [0, cut in (2, 3]]; shot 1: up to a cut in (7.96, 8.0]; shot 2: to the end at 20 s
SHOTS = VideoShots(boundaries=[(2.0, 3.0), (7.96, 8.0)], duration_s=20.0, fps=25.0)


def _brief(spans: list[dict]) -> list[tuple]:
    return [
        (s["video_id"], s["image_key"], s["match_t_s"], s["plan_start_s"], s["plan_end_s"])
        for s in spans
    ]


def test_shot_of():
    assert [SHOTS.shot_of(t) for t in (0.0, 1.0, 2.0)] == [0, 0, 0]
    assert [SHOTS.shot_of(t) for t in (3.0, 5.0, 7.96)] == [1, 1, 1]
    assert [SHOTS.shot_of(t) for t in (8.0, 12.0, 19.96)] == [2, 2, 2]
    assert VideoShots([], 5.0, 25.0).shot_of(4.0) == 0


def test_shot_limits():
    assert SHOTS.shot_limits(0) == ((0.0, 0.0), (2.0, 3.0))
    assert SHOTS.shot_limits(1) == ((2.0, 3.0), (7.96, 8.0))
    assert SHOTS.shot_limits(2) == ((7.96, 8.0), (20.0, 20.0))
    assert VideoShots([], 5.0, 25.0).shot_limits(0) == ((0.0, 0.0), (5.0, 5.0))


def test_hits_of_one_image_in_one_shot_make_one_span_at_the_best_score():
    matches = {"v": [(4.0, "a", 0.80), (5.0, "a", 0.90), (6.0, "a", 0.85), (7.0, "a", 0.90)]}

    spans, dropped = select_spans(matches, {"v": SHOTS})

    assert len(spans) == 1
    span = spans[0]
    assert span["match_t_s"] == 5.0  # best score; the earlier of two equal ones
    assert span["similarity"] == pytest.approx(0.90)
    assert span["shot"] == 1
    assert (span["plan_start_s"], span["plan_end_s"]) == (2.0, 8.0)
    assert dropped == {"shot_too_short": 0, "image_cap": 0, "video_cap": 0}


def test_span_carries_why_it_was_chosen():
    spans, _ = select_spans({"v": [(5.0, "a", 0.9)]}, {"v": SHOTS})

    assert spans == [
        {
            "video_id": "v",
            "image_key": "a",
            "match_t_s": 5.0,
            "similarity": pytest.approx(0.9),
            "shot": 1,
            "shot_start_lo": 2.0,
            "shot_start_hi": 3.0,
            "shot_end_lo": 7.96,
            "shot_end_hi": 8.0,
            "video_duration_s": 20.0,
            "video_fps": 25.0,
            "plan_start_s": 2.0,
            "plan_end_s": 8.0,
        }
    ]


def test_one_image_in_different_shots_makes_several_spans():
    matches = {"v": [(1.0, "a", 0.8), (5.0, "a", 0.9), (12.0, "a", 0.75)]}

    spans, _ = select_spans(matches, {"v": SHOTS})

    assert [(s["shot"], s["match_t_s"]) for s in spans] == [(0, 1.0), (1, 5.0), (2, 12.0)]


def test_spans_are_bounded_by_shot_and_video():
    matches = {"v": [(1.0, "first", 0.9), (5.0, "middle", 0.9), (18.5, "last", 0.9)]}

    spans, _ = select_spans(matches, {"v": SHOTS}, clip_seconds=10.0)

    assert _brief(spans) == [
        ("v", "first", 1.0, 0.0, 3.0),  # video start, then the widest end of shot 0
        ("v", "middle", 5.0, 2.0, 8.0),  # inside shot 1 on both sides
        ("v", "last", 18.5, 13.5, 20.0),  # clip_seconds before, the video's end after
    ]
    for span in spans:
        assert span["plan_start_s"] <= span["match_t_s"] <= span["plan_end_s"]
        assert span["plan_end_s"] - span["plan_start_s"] <= 10.0


def test_short_clip_seconds_are_centred_on_the_match():
    spans, _ = select_spans({"v": [(12.0, "a", 0.9)]}, {"v": SHOTS}, clip_seconds=4.0)
    assert (spans[0]["plan_start_s"], spans[0]["plan_end_s"]) == (10.0, 14.0)


def test_cap_per_image_keeps_the_best():
    matches = {
        "v": [(1.0, "a", 0.70), (5.0, "a", 0.95), (12.0, "a", 0.80)],
        "w": [(1.0, "a", 0.90), (5.0, "b", 0.60)],
    }

    spans, dropped = select_spans(
        matches, {"v": SHOTS, "w": SHOTS}, max_clips_per_image=2, max_clips_per_video=50
    )

    assert _brief(spans) == [
        ("v", "a", 5.0, 2.0, 8.0),
        ("w", "a", 1.0, 0.0, 3.0),
        ("w", "b", 5.0, 2.0, 8.0),
    ]
    assert dropped == {"shot_too_short": 0, "image_cap": 2, "video_cap": 0}


def test_cap_per_video_keeps_the_best():
    matches = {
        "v": [(1.0, "a", 0.70), (5.0, "b", 0.95), (12.0, "c", 0.80), (13.0, "d", 0.75)],
        "w": [(1.0, "e", 0.50)],
    }

    spans, dropped = select_spans(matches, {"v": SHOTS, "w": SHOTS}, max_clips_per_video=2)

    assert [(s["video_id"], s["image_key"]) for s in spans] == [("v", "b"), ("v", "c"), ("w", "e")]
    assert dropped == {"shot_too_short": 0, "image_cap": 0, "video_cap": 2}


def test_caps_are_counted_over_kept_spans_only():
    # the best candidate of "a" is dropped for its short shot, so it does not use up a's cap
    shots = VideoShots([(2.0, 2.04), (2.5, 2.54)], duration_s=20.0, fps=25.0)
    matches = {"v": [(2.04, "a", 0.99), (10.0, "a", 0.8)]}

    spans, dropped = select_spans(matches, {"v": shots}, max_clips_per_image=1)

    assert _brief(spans) == [("v", "a", 10.0, 5.0, 15.0)]
    assert dropped == {"shot_too_short": 1, "image_cap": 0, "video_cap": 0}


def test_min_clip_seconds_drops_short_shots():
    shots = VideoShots([(2.0, 2.04), (2.5, 2.54)], duration_s=20.0, fps=25.0)
    matches = {"v": [(2.04, "a", 0.9), (2.5, "b", 0.9), (6.0, "c", 0.9)]}

    spans, dropped = select_spans(matches, {"v": shots}, min_clip_seconds=1.0)

    # shot 1 spans at most (2.0, 2.54): 0.54 s
    assert [s["image_key"] for s in spans] == ["c"]
    assert dropped["shot_too_short"] == 2

    spans, dropped = select_spans(matches, {"v": shots}, min_clip_seconds=0.5)
    assert [s["image_key"] for s in spans] == ["a", "b", "c"]  # a and b: one shot, two images
    assert dropped["shot_too_short"] == 0


def test_select_is_deterministic_and_sorted():
    matches = {
        "w": [(12.0, "b", 0.8), (1.0, "a", 0.8)],
        "v": [(5.0, "b", 0.8), (5.0, "a", 0.8)],
    }
    spans, _ = select_spans(matches, {"v": SHOTS, "w": SHOTS})
    again, _ = select_spans(dict(reversed(list(matches.items()))), {"v": SHOTS, "w": SHOTS})

    assert spans == again
    keys = [(s["video_id"], s["match_t_s"], s["image_key"]) for s in spans]
    assert keys == [("v", 5.0, "a"), ("v", 5.0, "b"), ("w", 1.0, "a"), ("w", 12.0, "b")]


def test_no_matches():
    assert select_spans({}, {}) == ([], {"shot_too_short": 0, "image_cap": 0, "video_cap": 0})


def test_bound_span():
    span = {"match_t_s": 5.0, "video_duration_s": 20.0}
    assert bound_span(span, 10.0, 2.6, 7.98) == (2.6, 7.98)
    assert bound_span(span, 4.0, 2.6, 7.98) == (3.0, 7.0)
    assert bound_span({**span, "match_t_s": 1.0}, 10.0, 0.0, 7.98) == (0.0, 6.0)
    assert bound_span({**span, "match_t_s": 18.0}, 10.0, 8.0, 20.0) == (13.0, 20.0)
    # a shot end past the stated duration is clipped to the video
    assert bound_span({**span, "match_t_s": 18.0}, 10.0, 8.0, 25.0) == (13.0, 20.0)


def test_needs_refinement():
    assert needs_refinement(2.56, 2.6, 25.0) is False  # neighbouring frames: exact
    assert needs_refinement(2.0, 3.0, 25.0) is True  # neighbouring keyframes: coarse
    assert needs_refinement(2.0, 2.08, 25.0) is True
    assert needs_refinement(2.0, 2.0333, 30.0) is False
    assert needs_refinement(2.0, 2.1, 30.0) is True
    assert needs_refinement(0.0, 0.05, 0.0) is False  # unknown fps: 25 assumed
    assert needs_refinement(0.0, 0.1, 0.0) is True


def _spans(*seconds: float) -> list[dict]:
    return [{"plan_start_s": 0.0, "plan_end_s": s} for s in seconds]


def test_plan_groups_respects_max_rows():
    groups = plan_groups(_spans(1, 1, 1, 1, 1), max_rows=2, max_bytes=10**9, bytes_per_second=1)
    assert groups == [0, 0, 1, 1, 2]


def test_plan_groups_respects_bytes():
    # 2 s at 1000 B/s = 2000 B each; 5000 B hold two
    groups = plan_groups(_spans(2, 2, 2, 2, 2), max_rows=100, max_bytes=5000, bytes_per_second=1000)
    assert groups == [0, 0, 1, 1, 2]

    # a span bigger than max_bytes still gets a group of its own
    groups = plan_groups(_spans(1, 9, 1, 1), max_rows=100, max_bytes=5000, bytes_per_second=1000)
    assert groups == [0, 1, 2, 2]


def test_plan_groups_both_limits_and_empty():
    groups = plan_groups(
        _spans(1, 1, 1, 3, 1, 1), max_rows=3, max_bytes=4000, bytes_per_second=1000
    )
    assert groups == [0, 0, 0, 1, 1, 2]
    assert plan_groups([], max_rows=3, max_bytes=10, bytes_per_second=1) == []


def test_clip_id_is_deterministic():
    first = clip_id("vid000", 1.0, 11.0, "a cat on a mat")

    assert first == clip_id("vid000", 1.0, 11.0, "a cat on a mat")
    assert first == "92594a84e0347fe77355"  # ids must not change between versions either
    assert len(first) == 20 and int(first, 16) >= 0
    # the same to the millisecond
    assert clip_id("vid000", 1.0002, 10.9998, "a cat on a mat") == first


@pytest.mark.parametrize(
    "changed",
    [
        ("vid001", 1.0, 11.0, "a cat on a mat"),
        ("vid000", 1.001, 11.0, "a cat on a mat"),
        ("vid000", 1.0, 11.001, "a cat on a mat"),
        ("vid000", 1.0, 11.0, "a cat on a mat."),
        ("vid000", 11.0, 1.0, "a cat on a mat"),
    ],
)
def test_clip_id_changes_with_each_input(changed: tuple):
    assert clip_id(*changed) != clip_id("vid000", 1.0, 11.0, "a cat on a mat")


def test_clip_id_fields_do_not_run_together():
    assert clip_id("ab", 1.0, 2.0, "c") != clip_id("a", 1.0, 2.0, "bc")
    assert clip_id("v1", 1.0, 2.0, "c") != clip_id("v", 11.0, 2.0, "c")
