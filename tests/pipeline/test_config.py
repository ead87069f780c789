"""Config: defaults in code, YAML over them, --set over both, every bad value refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import ConfigError, MineConfig, describe, load_config, parse_override


def test_defaults_need_no_file():
    cfg = load_config()
    assert cfg == MineConfig()
    assert cfg.decode.mode == "fps"
    assert cfg.embed.kind == "dct"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("match:\n  clip_seconds: 6\n  max_clips_per_image: 3\ncut:\n  mode: copy\n")
    cfg = load_config(path, ["match.clip_seconds=8", "embed.pretrained=/w/model.pt"])
    assert cfg.match.clip_seconds == 8.0
    assert cfg.match.max_clips_per_image == 3
    assert cfg.cut.mode == "copy"
    assert cfg.embed.pretrained == "/w/model.pt"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("match.thresold=0.8", "unknown key match.thresold"),
        ("matching.threshold=0.8", "unknown key matching"),
        ("decode.mode=everything", "decode.mode: 'everything' is not allowed"),
        ("cut.crf=99", "cut.crf: 99 is above the maximum 51"),
        ("shards.max_rows=0", "shards.max_rows: 0 is below the minimum 1"),
        ("shards.max_rows=2.5", "shards.max_rows: expected a whole number"),
        ("match.clip_seconds=long", "match.clip_seconds: expected a number"),
        ("index.add_flipped=maybe", "index.add_flipped: expected true or false"),
        ("match", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(overrides=[override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("match: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_override_values_are_yaml():
    assert parse_override("match.threshold=null") == {"match": {"threshold": None}}
    assert parse_override("a.b.c=true") == {"a": {"b": {"c": True}}}


def test_every_field_is_documented():
    lines = describe()
    cfg = MineConfig()
    n_fields = sum(len(dataclasses.fields(getattr(cfg, f.name))) for f in dataclasses.fields(cfg))
    assert len(lines) == n_fields
    assert all("  # " in line and line.split("  # ")[1].strip() for line in lines)


def test_fingerprint_ignores_placement_only():
    base = load_config()
    assert load_config(overrides=["ray.num_cpus=8", "embed.actors=3"]).fingerprint() == (
        base.fingerprint()
    )
    assert load_config(overrides=["match.clip_seconds=4"]).fingerprint() != base.fingerprint()


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml"))
    assert configs, "configs/ must hold at least one example"
    for path in configs:
        load_config(path)
