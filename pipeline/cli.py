"""The `vcc` command line: mine, demo, train, run, inspect, config."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from mining.images import InputError
from pipeline.config import ConfigError, describe, load_config

log = logging.getLogger("vcc")

EXIT_USAGE = 2


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see `vcc config` for every field)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set match.threshold=0.8 (repeatable)",
    )
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded Ray)"
    )


def _config(args: argparse.Namespace):
    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    return load_config(args.config, overrides)


def cmd_mine(args: argparse.Namespace) -> int:
    from pipeline.mine import mine

    cfg = _config(args)
    result = mine(args.images, args.videos, args.out, cfg)
    s = result.stats
    if s["fetch"]["urls"]:
        print_fetch(s["fetch"])
    print(
        f"mined {s['clips']} clips into {len(result.shards)} shards under {result.out / 'shards'}"
    )
    print(
        f"videos: {s['videos_done']} done, {len(s['videos_failed'])} failed; "
        f"images: {s['images']} indexed, {len(s['images_failed'])} failed; "
        f"clips failed: {len(s['clips_failed'])}; stats: {result.out / 'stats.json'}"
    )
    return 0


def print_fetch(summary: dict) -> None:
    failed = ", ".join(f"{k} {v}" for k, v in sorted(summary["failed_by_class"].items()))
    print(
        f"fetched {summary['done']} of {summary['urls']} URLs"
        + (f"; failed: {failed}" if failed else "")
        + (f"; quarantined: {len(summary['quarantined'])}" if summary["quarantined"] else "")
    )


def cmd_fetch(args: argparse.Namespace) -> int:
    from pipeline.mine import fetch

    summary = fetch(args.videos, args.out, _config(args))
    print_fetch(summary)
    print(f"records: {Path(args.out) / 'fetch'}; videos: {Path(args.out) / 'videos'}")
    return 0


def cmd_videocc(args: argparse.Namespace) -> int:
    from pipeline.videocc import redownload

    stats = redownload(args.csv, args.out, _config(args))
    print(
        f"rebuilt {stats['clips']} of {stats['rows']} VideoCC rows into {stats['shards']} shards "
        f"under {Path(args.out) / 'shards'}; malformed rows: {len(stats['rows_malformed'])}, "
        f"failed clips: {len(stats['clips_failed'])}; stats: {Path(args.out) / 'stats.json'}"
    )
    return 0


def _train_config(args: argparse.Namespace, unprefixed: str = "mine", default_file=None):
    """The train section; bare `--set k=v` belong to mining unless the command is `train`."""
    from training.config import load_train_config

    overrides = list(args.overrides)
    if args.address:
        overrides.append(f"train.ray.address={args.address}")
    return load_train_config(args.config or default_file, overrides, unprefixed)


def print_training(report: dict, out: Path) -> None:
    from training.report import summarize_training

    print(summarize_training(report, out / "train"))


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.mine import init_ray
    from training.train import train

    cfg = _train_config(args, unprefixed="train")
    init_ray(cfg.ray)
    report = train(args.shards, args.out, cfg)
    print_training(report, Path(args.out))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.mine import mine
    from training.train import train

    mine_cfg = _config(args)
    train_cfg = _train_config(args)
    result = mine(args.images, args.videos, args.out, mine_cfg)
    print(f"mined {result.stats['clips']} clips under {result.out / 'shards'}")
    report = train(str(result.out), args.out, train_cfg)
    print_training(report, Path(args.out))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import DEMO_TRAIN_CONFIG, run_demo

    train_cfg = _train_config(args, default_file=DEMO_TRAIN_CONFIG)
    report = run_demo(
        Path(args.out), _config(args), train_cfg, small=args.small, mine_only=args.mine_only
    )
    return 0 if report["passed"] else 1


def cmd_config(args: argparse.Namespace) -> int:
    if args.config or args.overrides:
        print(json.dumps(_config(args).to_dict(), indent=2))
    else:
        from training.config import TrainConfig

        print("\n".join(["# mine: (vcc mine, run, demo)", *describe()]))
        print("\n".join(["# train: (vcc train, run, demo)", *describe(TrainConfig, "train.")]))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect import (
        InspectError,
        format_sample,
        format_summary,
        open_run,
        read_clips,
        sample_rows,
        summarize,
    )

    view = open_run(args.path)
    status = 0
    if args.validate:
        from pipeline.validate import format_validation, validate

        problems, checked = validate(view, workers=args.workers)
        print(format_validation(problems, checked))
        status = 1 if problems else 0
    if args.sample:
        print(format_sample(sample_rows(read_clips(view), args.sample, args.seed)))
    if args.html is not None:
        from pipeline.report_html import write_report

        if not args.html and view.root is None:
            raise InspectError("these shards have no run root to hold a report: give --html DIR")
        target = Path(args.html) if args.html else view.root.root / "report"
        print(f"report: {write_report(view, target, args.max_cards, args.seed)}")
    if not (args.validate or args.sample or args.html is not None):
        summary = summarize(view)
        text = format_summary(summary, view)
        print(json.dumps(summary, indent=2, default=str) if args.json else text)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcc", description="Mine captioned video clips from an image-caption table (VideoCC)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    mine = sub.add_parser("mine", help="mine clips: images + videos -> shards under --out")
    mine.add_argument(
        "--images",
        required=True,
        help="image table: Parquet file, folder or glob with key, caption, jpg",
    )
    mine.add_argument(
        "--videos",
        required=True,
        help="videos: a folder, a glob, or a table (parquet/csv/tsv/txt) of paths or URLs",
    )
    mine.add_argument("--out", required=True, help="output root; rerunning on it resumes")
    _add_config_args(mine)
    mine.set_defaults(func=cmd_mine)

    fetch = sub.add_parser(
        "fetch", help="fetch a video URL list into --out (pass 0 alone); `vcc mine` reuses it"
    )
    fetch.add_argument(
        "--videos",
        required=True,
        help="URL list: csv/tsv/parquet with `url` (and `video_id`), or txt",
    )
    fetch.add_argument("--out", required=True, help="output root; rerunning on it resumes")
    _add_config_args(fetch)
    fetch.set_defaults(func=cmd_fetch)

    videocc = sub.add_parser(
        "videocc",
        help="rebuild a published VideoCC CSV (id, start_us, end_us, caption) as shards",
    )
    videocc.add_argument("csv", help="the VideoCC CSV; ids become URLs by fetch.url_template")
    videocc.add_argument("--out", required=True, help="output root; rerunning on it resumes")
    _add_config_args(videocc)
    videocc.set_defaults(func=cmd_videocc)

    demo = sub.add_parser("demo", help="generate the demo corpus offline, mine it, and score it")
    demo.add_argument("--out", default="demo-out", help="where the corpus and the run go")
    demo.add_argument("--small", action="store_true", help="the small corpus of the tests")
    demo.add_argument("--mine-only", action="store_true", help="mine and score; do not train")
    _add_config_args(demo)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train VideoCoCa on shards with Ray Train; evaluate")
    train.add_argument("--shards", required=True, help="a run's OUT, a shards folder, or a glob")
    train.add_argument(
        "--out", required=True, help="output root: the run goes to OUT/train; rerunning resumes it"
    )
    _add_config_args(train)
    train.set_defaults(func=cmd_train)

    run = sub.add_parser("run", help="mine, then train and evaluate on the new shards")
    run.add_argument("--images", required=True, help="image table, as for `vcc mine`")
    run.add_argument("--videos", required=True, help="videos, as for `vcc mine`")
    run.add_argument("--out", required=True, help="output root for the shards and the training")
    _add_config_args(run)
    run.set_defaults(func=cmd_run)

    inspect = sub.add_parser(
        "inspect",
        help="summarize a run's shards; --validate them, --html report, --sample rows",
        description="Without an action flag: a summary (counts, distributions, failures by stage "
        "and reason, the run's ids, training). Exit status 1 when --validate finds problems.",
    )
    inspect.add_argument(
        "path", metavar="OUT|SHARDS", help="a run's output root, its shards folder, or a glob"
    )
    inspect.add_argument(
        "--validate",
        action="store_true",
        help="check every shard: schema, clips decode with their rows' spans, frames decode, "
        "unique ids, spans within the source video; lists each problem",
    )
    inspect.add_argument(
        "--html",
        nargs="?",
        const="",
        metavar="DIR",
        help="write an HTML report that opens from the file system (default DIR: OUT/report)",
    )
    inspect.add_argument("--sample", type=int, default=0, metavar="N", help="print N random rows")
    inspect.add_argument("--seed", type=int, default=0, help="seed of --sample and the report")
    inspect.add_argument(
        "--max-cards", type=int, default=200, help="clips shown in the report, sampled (seeded)"
    )
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    inspect.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="threads decoding for --validate"
    )
    inspect.set_defaults(func=cmd_inspect)

    config = sub.add_parser("config", help="print every config field with its default and meaning")
    _add_config_args(config)
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # our loggers at INFO (DEBUG with -v); libraries that log to the root logger stay quiet
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for name in ("vcc", "mining", "pipeline", "training"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except (ConfigError, InputError) as err:
        print(f"vcc: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # the known run-level refusals are RuntimeErrors with a message
        from pipeline.mine import RunMismatchError
        from training.train import TrainMismatchError

        if isinstance(err, (RunMismatchError, TrainMismatchError)):
            print(f"vcc: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
