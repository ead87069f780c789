"""Fixtures for the DAG tests: one embedded Ray for the session, and a mined small corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from pipeline.config import load_config
from pipeline.mine import MineResult, mine


@pytest.fixture(scope="session")
def ray_session():
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mined(small_corpus: Path, tmp_path_factory: pytest.TempPathFactory, ray_session) -> MineResult:
    """The small corpus mined once, uninterrupted, with default settings but small shards."""
    out = tmp_path_factory.mktemp("mined") / "out"
    return mine(
        str(small_corpus / "images.parquet"),
        str(small_corpus / "videos"),
        str(out),
        load_config(overrides=["shards.max_rows=3", "ray.num_cpus=2"]),
    )
