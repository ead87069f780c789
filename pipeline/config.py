"""Typed mining configuration: defaults in code, YAML files over them, `--set` over both.

Every field carries a one-line meaning (`help`) and is checked when the config is built, so a bad
file or override stops the run before any work, naming the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which field and why."""


def option(default: Any, help: str, **kw: Any) -> Any:
    """A config field: its default, its one-line meaning, and bounds (min=, max=)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RayConfig:
    address: str | None = option(
        None, "Ray cluster address; None starts an embedded Ray (RAY_ADDRESS also works)"
    )
    num_cpus: int | None = option(None, "CPUs of the embedded Ray; None uses all of this machine's")


@dataclass
class DecodeConfig:
    mode: Literal["keyframes", "fps"] = option(
        "fps",
        "fps: frames at a fixed rate, exact cuts; keyframes: I-frames only, faster, misses more",
    )
    fps: float = option(1.0, "frames per second sampled in fps mode", min=0.01)
    frame_height: int = option(
        180, "height of the frames handed to the embedder (aspect kept)", min=32
    )
    chunk_frames: int = option(64, "frames per unit of work streamed from decode to embed", min=1)
    shot_threshold: float = option(
        0.35, "signature distance between neighbouring frames that marks a cut", min=0.0, max=2.0
    )


@dataclass
class EmbedConfig:
    kind: Literal["dct", "open_clip"] = option(
        "dct", "dct: the weight-free default; open_clip: a CLIP image tower"
    )
    model: str = option("ViT-B-32", "open_clip model name (open_clip only)")
    pretrained: str | None = option(
        None, "open_clip pretrained tag or local weights file; None = random weights"
    )
    device: Literal["cpu", "cuda"] = option(
        "cpu", "where the embedder runs; cuda also makes the stage ask Ray for a GPU"
    )
    batch_size: int = option(64, "images per forward pass (open_clip only)", min=1)
    actors: int = option(1, "embedder actors for frames", min=1)


@dataclass
class IndexConfig:
    type: str = option(
        "auto",
        "auto (exact below 100k images, else IVF), Flat, HNSW32, or a FAISS index_factory string",
    )
    nprobe: int = option(16, "IVF lists searched per query", min=1)
    top_k: int = option(8, "nearest images kept per frame window", min=1)
    add_flipped: bool = option(True, "also index each image mirrored, so flipped captions match")


@dataclass
class MatchConfig:
    threshold: float | None = option(
        None,
        "cosine similarity a match must reach; None = the embedder's default",
        min=-1.0,
        max=1.0,
    )
    clip_seconds: float = option(
        10.0, "clip length around the matched frame, before shot and video bounds", min=0.1
    )
    min_clip_seconds: float = option(
        1.0, "clips shorter than this after bounding are dropped", min=0.0
    )
    max_clips_per_image: int = option(
        10, "most clips one caption image may give, best first", min=1
    )
    max_clips_per_video: int = option(50, "most clips one video may give, best first", min=1)


@dataclass
class CutConfig:
    mode: Literal["reencode", "copy"] = option(
        "reencode", "reencode: frame-accurate H.264; copy: stream copy from the keyframe before"
    )
    max_height: int = option(360, "re-encoded clips are scaled down to at most this height", min=16)
    fps: float = option(25.0, "frame rate of re-encoded clips", min=1.0)
    crf: int = option(23, "x264 quality of re-encoded clips (lower is better)", min=0, max=51)
    preset: str = option("veryfast", "x264 preset of re-encoded clips")
    frames: int = option(8, "JPEG frames sampled evenly from each clip", min=1)
    frame_height: int = option(224, "height of the sampled JPEG frames", min=16)
    keep_audio: bool = option(True, "keep the first audio stream in clips")


@dataclass
class ShardConfig:
    max_rows: int = option(500, "most clips per shard", min=1)
    max_bytes: int = option(
        256 * 2**20, "a shard is closed once its clips reach about this many bytes", min=2**16
    )
    compression: Literal["zstd", "snappy", "none"] = option("zstd", "Parquet compression")


@dataclass
class FetchConfig:
    allow_private: bool = option(
        False, "allow URLs on loopback or private addresses (local servers, tests)"
    )
    max_height: int = option(720, "fetch the best format at most this tall", min=16)
    container: str = option("mp4", "preferred container of fetched videos (mp4, webm, any)")
    max_duration_s: float = option(
        3 * 3600.0, "videos longer than this are refused (a permanent failure)", min=1.0
    )
    max_filesize_mb: float = option(
        2048.0, "videos larger than this are refused (a permanent failure)", min=0.001
    )
    timeout_s: float = option(
        30.0, "socket timeout of one request; a stalled fetch fails after it", min=0.1
    )
    retries: int = option(
        3, "retries within one run of a URL that failed transiently (429, 5xx, timeouts)", min=0
    )
    backoff_s: float = option(
        1.0, "first wait after a host's transient failure; doubles each time", min=0.0
    )
    max_backoff_s: float = option(60.0, "longest wait, Retry-After included", min=0.0)
    quarantine_after: int = option(
        3, "runs that may fail a URL transiently before it is quarantined (never retried)", min=1
    )
    concurrency: int = option(8, "URLs fetched at once in all", min=1)
    per_host: int = option(4, "URLs fetched at once from one host", min=1)
    per_host_rate: float = option(
        0.0, "most fetches started per second on one host; 0 for no limit", min=0.0
    )
    cookies: str | None = option(None, "Netscape cookies file passed to yt-dlp (bot checks)")
    proxy: str | None = option(None, "proxy URL passed to yt-dlp, e.g. socks5://127.0.0.1:1080")
    cache: Literal["keep", "delete"] = option(
        "keep",
        "keep fetched videos under OUT/videos, or delete each after pass 1 and fetch only the "
        "selected sections in pass 2 (bounds disk)",
    )
    image_processes: int = option(1, "img2dataset processes fetching image URL lists", min=1)
    image_threads: int = option(16, "img2dataset threads per process", min=1)
    url_template: str = option(
        "https://www.youtube.com/watch?v={id}",
        "URL of a video given by id only (VideoCC CSV rows, `video_id` without `url`)",
    )


# fetch fields that say how, not what: they may change between runs on one OUT
FETCH_PLACEMENT = (
    "allow_private",
    "timeout_s",
    "retries",
    "backoff_s",
    "max_backoff_s",
    "quarantine_after",
    "concurrency",
    "per_host",
    "per_host_rate",
    "cookies",
    "proxy",
    "cache",
    "image_processes",
    "image_threads",
)


@dataclass
class MineConfig:
    ray: RayConfig = field(default_factory=RayConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    cut: CutConfig = field(default_factory=CutConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """What decides the output; a rerun on the same OUT must have the same one."""
        data = self.to_dict()
        data.pop("ray")
        data["embed"].pop("actors")
        # how hard and through what videos are fetched changes no clip; what is fetched does
        for name in FETCH_PLACEMENT:
            data["fetch"].pop(name)
        return digest(data)


def digest(data: dict[str, Any]) -> str:
    """A short stable hash of a config's fields (placement fields left out by the caller)."""
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _check_value(path: str, value: Any, hint: Any, meta: dict[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_value(path, value, inner[0], meta)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{path}: {value!r} is not allowed; use one of {allowed}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if hint is int and not float(value).is_integer():
            raise ConfigError(f"{path}: expected a whole number, got {value!r}")
        value = hint(value)
        if "min" in meta and value < meta["min"]:
            raise ConfigError(f"{path}: {value} is below the minimum {meta['min']}")
        if "max" in meta and value > meta["max"]:
            raise ConfigError(f"{path}: {value} is above the maximum {meta['max']}")
        return value
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: expected a non-empty string, got {value!r}")
        return value
    raise AssertionError(f"unhandled config type {hint} at {path}")


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix or "the top level"
        raise ConfigError(
            f"unknown key {prefix + '.' if prefix else ''}{unknown[0]} in {where}; "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, path)
        else:
            kwargs[name] = _check_value(path, value, hint, dict(fields[name].metadata))
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=value` -> {"a": {"b": value}}, the value read as YAML (so 1, true, null work)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. match.threshold=0.8")
    value = yaml.safe_load(raw) if raw.strip() else ""
    node: dict[str, Any] = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return node


SECTIONS = ("mine", "train")


def read_sections(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """A config file's `mine:` and `train:` sections; a file without them is all `mine`."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    if not any(key in SECTIONS for key in loaded):
        return {"mine": loaded}
    unknown = sorted(set(loaded) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown section {unknown[0]}; use mine: and train:")
    return {key: value or {} for key, value in loaded.items()}


def load_section(
    cls: type,
    section: str,
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    unprefixed: str | None = None,
) -> Any:
    """Defaults of `cls`, then the file's `section`, then the overrides meant for it.

    An override `section.a.b=v` is for that section; one without a section prefix is for
    `unprefixed` (the section of the command being run; default: this one).
    """
    data = read_sections(path).get(section, {})
    for text in overrides:
        head = text.split(".", 1)[0]
        if head in SECTIONS:
            if head != section:
                continue
            text = text.split(".", 1)[1]
        elif (unprefixed or section) != section:
            continue
        data = _merge(data, parse_override(text))
    return _build(cls, data, "")


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> MineConfig:
    """The mining config: defaults, then the YAML file, then each `--set` override."""
    return load_section(MineConfig, "mine", path, overrides)


def describe(cls: type = MineConfig, prefix: str = "") -> list[str]:
    """One line per field: dotted name, default, meaning; for `vcc config` and the README."""
    lines = []
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint):
            lines.extend(describe(hint, path + "."))
        else:
            lines.append(f"{path} = {f.default!r}  # {f.metadata['help']}")
    return lines
