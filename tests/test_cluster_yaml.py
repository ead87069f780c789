"""ray_cluster.yaml is a launcher config that `ray up` accepts."""

from __future__ import annotations

from pathlib import Path

import yaml
from ray.autoscaler._private.util import fillout_defaults, validate_config

ROOT = Path(__file__).parents[1]


def test_cluster_config_validates_against_rays_schema():
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    validate_config(fillout_defaults(config))  # what `ray up` does first; raises when invalid
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert {"cpu_worker", "gpu_worker"} <= set(types)
