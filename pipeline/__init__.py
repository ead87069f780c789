"""Pipeline drivers: where and how the mining stages run, plus demo inputs."""
