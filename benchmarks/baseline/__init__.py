"""The baseline bridge ``voxrelay bench`` measures voxrelay against.

It is the design one would write first: one asyncio process (the default event loop)
holding both aiortc legs of every conversation, with stock aiortc doing decode →
resample → re-encode on each. It answers the subset of voxrelay's HTTP API that the
load generator uses (:mod:`.app`), so the same clients drive both servers.

Run: ``python -m benchmarks.baseline --host 127.0.0.1 --port 8090
--openai-base-url http://127.0.0.1:8765/v1 [--api-key sk-...]``.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as voxrelay's media processes, before numpy
