"""The `vcc` command line: mine, demo, config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mining.images import InputError
from mining.index import factory_string  # noqa: F401  (keeps faiss import errors at start-up)
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
    print(
        f"mined {s['clips']} clips into {len(result.shards)} shards under {result.out / 'shards'}"
    )
    print(
        f"videos: {s['videos_done']} done, {len(s['videos_failed'])} failed; "
        f"images: {s['images']} indexed, {len(s['images_failed'])} failed; "
        f"clips failed: {len(s['clips_failed'])}; stats: {result.out / 'stats.json'}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    cfg = _config(args)
    report = run_demo(Path(args.out), cfg, small=args.small)
    print(json.dumps(report["score"], indent=2))
    return 0 if report["passed"] else 1


def cmd_config(args: argparse.Namespace) -> int:
    if args.config or args.overrides:
        print(json.dumps(_config(args).to_dict(), indent=2))
    else:
        print("\n".join(describe()))
    return 0


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
        help="videos: a folder, a glob, or a table (parquet/csv/tsv/txt) of paths",
    )
    mine.add_argument("--out", required=True, help="output root; rerunning on it resumes")
    _add_config_args(mine)
    mine.set_defaults(func=cmd_mine)

    demo = sub.add_parser("demo", help="generate the demo corpus offline, mine it, and score it")
    demo.add_argument("--out", default="demo-out", help="where the corpus and the run go")
    demo.add_argument("--small", action="store_true", help="the small corpus of the tests")
    _add_config_args(demo)
    demo.set_defaults(func=cmd_demo)

    config = sub.add_parser("config", help="print every config field with its default and meaning")
    _add_config_args(config)
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except (ConfigError, InputError) as err:
        print(f"vcc: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # the known run-level refusals are RuntimeErrors with a message
        from pipeline.mine import RunMismatchError

        if isinstance(err, RunMismatchError):
            print(f"vcc: error: {err}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
