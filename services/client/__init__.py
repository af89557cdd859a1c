"""voxrelay's Python client (aiortc): replays, benchmarks and the tests join with it."""
