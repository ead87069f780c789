"""Run the benchmarks, print a table, write bench/out/results.json and the rows for RESULTS.md.

    .venv/bin/python bench/run_all.py   # all: ~11.5 min on 2 cores (train ~4), ~13 the first time
    .venv/bin/python bench/run_all.py --only decode,embed
    .venv/bin/python bench/run_all.py --only fetch   # ~2.5 min; yt-dlp over loopback HTTP
    .venv/bin/python bench/run_all.py --only train   # ~4 min; mines the corpus first if needed

Each benchmark is a module of this folder with a `run()` that returns a dict; every ratio's two
sides are measured in the same run, interleaved, and the medians are reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import cut
import decode
import e2e
import embed
import fetch
import search
import train

BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "decode": decode.run,
    "embed": embed.run,
    "search": search.run,
    "cut": cut.run,
    "fetch": fetch.run,
    "e2e": e2e.run,
    "train": train.run,
}

Row = tuple[str, str, str, str, str]  # figure, measured, baseline, ratio, contention


def _busy(contention: dict[str, Any]) -> str:
    flag = " (contended)" if contention["contended"] else ""
    return f"{contention['other_cores_mean']:.2f}{flag}"


def _decode_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for key in ("long720p", "corpus"):
        d = r[key]
        kf, fps1 = d["keyframes_mode"], d["fps1_mode"]
        full, nokey = d["ffmpeg_full"], d["ffmpeg_nokey"]
        busy = _busy(d["contention"])
        name = f"decode {key}"
        rows += [
            (
                f"{name}: keyframes mode",
                f"{kf['keyframes_per_s']:.1f} keyframes/s, {kf['video_s_per_s']:.1f} video-s/s",
                f"ffmpeg -skip_frame nokey: {nokey['video_s_per_s']:.1f} video-s/s",
                f"{d['ratio_keyframes_vs_ffmpeg_nokey']:.2f}x",
                busy,
            ),
            (
                f"{name}: keyframes mode",
                f"{kf['video_s_per_s']:.1f} video-s/s",
                f"ffmpeg full decode: {full['video_s_per_s']:.1f} video-s/s",
                f"{d['ratio_keyframes_vs_ffmpeg_full']:.2f}x",
                busy,
            ),
            (
                f"{name}: fps mode (1 fps)",
                f"{fps1['video_s_per_s']:.1f} video-s/s ({fps1['frames_per_s']:.1f} frames/s kept)",
                f"ffmpeg full decode: {full['video_s_per_s']:.1f} video-s/s",
                f"{d['ratio_fps1_vs_ffmpeg_full']:.2f}x",
                busy,
            ),
        ]
    return rows


def _embed_rows(r: dict[str, Any]) -> list[Row]:
    busy = _busy(r["contention"])
    frames = r["embed_frames"]
    return [
        (
            "embed: embed_images",
            f"{r['embed_images']['images_per_s']:.0f} images/s",
            "-",
            "-",
            busy,
        ),
        (
            "embed: embed_frames",
            f"{frames['frames_per_s']:.1f} frames/s ({frames['windows_per_s']:.0f} windows/s, "
            f"{r['windows_per_frame']} windows/frame)",
            "-",
            "-",
            busy,
        ),
    ]


def _search_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    for n, s in r["sizes"].items():
        busy = _busy(s["contention"])
        same = "same pairs" if s["same_pairs_flat_vs_numpy"] else "PAIRS DIFFER"
        rows.append(
            (
                f"search {int(n) // 1000}k images: Flat",
                f"{s['faiss_flat']['queries_per_s']:.0f} window-queries/s ({same})",
                f"NumPy matmul: {s['numpy']['queries_per_s']:.0f} window-queries/s",
                f"{s['ratio_flat_vs_numpy']:.2f}x",
                busy,
            )
        )
        if "faiss_auto" in s:
            auto = s["faiss_auto"]
            rows.append(
                (
                    f"search {int(n) // 1000}k images: auto ({auto['factory']})",
                    f"{auto['queries_per_s']:.0f} window-queries/s, recall "
                    f"{auto['vs_numpy']['recall']:.2f}, build {auto['build_s']:.1f}s",
                    f"NumPy matmul: {s['numpy']['queries_per_s']:.0f} window-queries/s",
                    f"{s['ratio_auto_vs_numpy']:.2f}x",
                    busy,
                )
            )
    return rows


def _cut_rows(r: dict[str, Any]) -> list[Row]:
    busy = _busy(r["contention"])
    re_, cp = r["reencode"], r["copy"]
    return [
        (
            "cut: copy vs reencode",
            f"copy {cp['clips_per_s']:.2f} clips/s, {cp['real_clip_s_per_s']:.1f} clip-s/s",
            f"reencode {re_['clips_per_s']:.2f} clips/s, {re_['real_clip_s_per_s']:.1f} clip-s/s",
            f"{r['ratio_copy_vs_reencode']:.2f}x",
            busy,
        )
    ]


def _fetch_rows(r: dict[str, Any]) -> list[Row]:
    rows = []
    labels = {
        "ytdlp_cli": "yt-dlp CLI -a urls.txt",
        "fetch_video": "fetch_video, one after another",
        "fetch_videos_cold": "fetch_videos (Ray), workers cold",
        "fetch_videos_warm": "fetch_videos (Ray), workers warm",
    }
    for key, where in (("loopback", "loopback"), ("latency", "50 ms a request")):
        d = r[key]
        base = d["ytdlp_api"]
        for name, label in labels.items():
            if name not in d:
                continue
            v = d[name]
            rows.append(
                (
                    f"fetch {d['urls']} URLs, {where}: {label}",
                    f"{v['urls_per_s']:.1f} URLs/s, {v['mib_per_s']:.1f} MiB/s, "
                    f"{v['cpu_s_per_url']:.3f} CPU-s/URL",
                    f"yt-dlp API: {base['urls_per_s']:.1f} URLs/s, {base['mib_per_s']:.1f} MiB/s, "
                    f"{base['cpu_s_per_url']:.3f} CPU-s/URL",
                    f"{d['ratio_vs_ytdlp_api'][name]:.2f}x",
                    _busy(d["contention"]),
                )
            )
    for key, where in (("section_loopback", "loopback"), ("section_latency", "50 ms a request")):
        d = r[key]
        sec, whole = d["section"], d["whole"]
        span = d["span"][1] - d["span"][0]
        rows.append(
            (
                f"fetch_section {span:.0f} s of {d['video_s']:.0f} s, {where}",
                f"{sec['wall_s_median']:.2f} s, {sec['server_kib_sent']:.0f} KiB sent, "
                f"{sec['requests']:.0f} requests",
                f"whole file: {whole['wall_s_median']:.2f} s, {whole['server_kib_sent']:.0f} KiB "
                f"sent, {whole['requests']:.0f} requests",
                f"{d['ratio_section_vs_whole_wall']:.2f}x",
                _busy(d["contention"]),
            )
        )
    return rows


def _e2e_rows(r: dict[str, Any]) -> list[Row]:
    p = r["passes"]
    return [
        (
            "e2e: vcc mine",
            f"{r['video_min_per_cpu_min']:.2f} video-min/CPU-min "
            f"({r['video_s'] / 60:.0f} min of video, {r['cpu_s']['session_sampled']:.0f} CPU-s)",
            f"wall {r['wall_s']:.0f}s: images+index {p.get('embed_images_and_index_s', '?')}s, "
            f"pass 1 {p.get('pass1_find_s', '?')}s, pass 2 {p.get('pass2_cut_s', '?')}s",
            f"{r['video_min_per_cpu_min_upper_bound_cpu']:.2f} if CPU = wall x cores",
            _busy(
                {
                    "other_cores_mean": r["other_cores_mean"],
                    "contended": r["other_cores_mean"] > common.CONTENTION_CORES,
                }
            ),
        )
    ]


def _train_rows(r: dict[str, Any]) -> list[Row]:
    i = r["input"]
    jpeg = i["jpeg"]
    rows = [
        (
            "train input: Preprocess, JPEG frames",
            f"{jpeg['clips_per_cpu_s']:.1f} clips/CPU-s ({jpeg['clips_per_s']:.1f} clips/s)",
            f"clip bytes via PyAV: {i['clip']['clips_per_cpu_s']:.2f} clips/CPU-s",
            f"{i['ratio_jpeg_vs_clip_per_cpu']:.1f}x",
            _busy(i["contention"]),
        )
    ]
    s = r["step"]
    for threads, per in s["threads"].items():
        image = per["image"]
        for adapter in ("attn_pool", "mean", "factorized", "joint"):
            a = per[adapter]
            rows.append(
                (
                    f"train step tiny, {threads} thread(s): {adapter}",
                    f"{a['clips_per_s']:.1f} clips/s ({a['frames_per_s']:.0f} frames/s; "
                    f"best step {a['clips_per_s_best']:.1f} clips/s)",
                    f"image CoCa step: {image['clips_per_s']:.1f} images/s "
                    f"(best {image['clips_per_s_best']:.1f})",
                    f"{a['ratio_vs_image_per_frame']:.2f}x per frame",
                    _busy(per["contention"]),
                )
            )
    if "vcc_train" in r:
        v = r["vcc_train"]
        rows.append(
            (
                f"train: vcc train, demo config, {v['steps']} steps",
                f"{v['steady_clips_per_s']:.1f} clips/s steady (wall {v['wall_s']:.0f}s, "
                f"first step at {v['first_step_at_s']:.0f}s)",
                f"in-process attn_pool step, 1 thread: "
                f"{s['threads']['1']['attn_pool']['clips_per_s']:.1f} clips/s",
                f"{v['ratio_steady_vs_step_attn_pool_1_thread']:.2f}x",
                _busy(
                    {
                        "other_cores_mean": v["other_cores_mean"],
                        "contended": v["other_cores_mean"] > common.CONTENTION_CORES,
                    }
                ),
            )
        )
    return rows


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "decode": _decode_rows,
    "embed": _embed_rows,
    "search": _search_rows,
    "cut": _cut_rows,
    "fetch": _fetch_rows,
    "e2e": _e2e_rows,
    "train": _train_rows,
}
HEADER: Row = ("figure", "measured", "baseline (same run)", "ratio", "other cores busy")


def _print_table(rows: list[Row]) -> None:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    for row in [HEADER, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def _markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--json", default=str(common.OUT_DIR / "results.json"), help="where to write results"
    )
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": common.machine(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "benchmarks": {},
    }
    prepared = time.perf_counter()
    common.corpus()
    if "decode" in chosen:
        common.long_video()
    results["media_prep_s"] = round(time.perf_counter() - prepared, 1)

    rows: list[Row] = []
    for name in chosen:
        t0 = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = BENCHMARKS[name]()
        result["bench_wall_s"] = round(time.perf_counter() - t0, 1)
        results["benchmarks"][name] = result
        rows += ROWS[name](result)
        print(f"  {name}: {result['bench_wall_s']}s", file=sys.stderr, flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    results["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    print()
    _print_table(rows)
    print(f"\ntotal {results['total_s']}s; results in {out}\n")
    print(_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
