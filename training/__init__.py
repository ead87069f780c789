"""VideoCoCa training on the mined shards (Ray Train); not built yet."""
