# One image for every voxrelay process. compose.yaml runs each service from it as
# `python -m services.<name>`; on its own, the image runs the whole stack under the
# supervisor (`docker run --network host voxrelay`; host networking because aiortc
# cannot pin its WebRTC UDP ports to a range a port mapping could publish).
FROM python:3.12-slim-bookworm

# espeak-ng: the simulator speaks its replies with it (without it, a tone signal).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*

# The distribution "voxrelay" (packages services and proto, console script `voxrelay`).
# Every dependency ships manylinux wheels (av bundles FFmpeg and Opus), so no compiler.
COPY pyproject.toml README.md /tmp/voxrelay/
COPY proto /tmp/voxrelay/proto
COPY services /tmp/voxrelay/services
RUN pip install --no-cache-dir --disable-pip-version-check /tmp/voxrelay \
    && rm -rf /tmp/voxrelay

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/voxrelay voxrelay \
    && mkdir -p /data \
    && chown voxrelay:voxrelay /data

# OPENBLAS_NUM_THREADS=1: NumPy's OpenBLAS threads otherwise busy-spin a core in the
# media processes. PYTHONUNBUFFERED=1: logs reach `docker logs` as they are written.
ENV OPENBLAS_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1 \
    VOXRELAY_DATA_DIR=/data

# The recorder's database (and signaling's TLS certificates) live here.
VOLUME ["/data"]
WORKDIR /home/voxrelay
USER voxrelay

CMD ["voxrelay", "up", "--host", "0.0.0.0"]
