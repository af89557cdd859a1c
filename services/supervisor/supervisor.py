"""``voxrelay up``: the whole stack as child processes of one supervisor.

Start order: bus, simulator (when no OPENAI_API_KEY), recorder, mixer, openai_link,
media edges, signaling; the URL is printed once signaling reports every service
alive. A crashed child is restarted with backoff; one that cannot run as configured
(its first run exits with ``EXIT_CONFIG``: a bad setting, a port already taken) stops
the whole stack, with exit status 1, rather than fail forever. Ctrl-C/SIGTERM stops the children
in stages — signaling (no new work), then edges, then the link (which hangs up its
calls while the simulator still listens), then the simulator and the mixer, then the
recorder (which flushes), then the bus — each with a deadline; a second Ctrl-C kills
everything at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import aiohttp

from services.signaling.config import ADMIN_KEY_FILE

from .children import Child, ChildSpec
from .config import UpConfig

logger = logging.getLogger(__name__)

STOP_DEADLINE_S = 8.0
READY_TIMEOUT_S = 60.0


KEY_HOLDERS = frozenset({"services.openai_link"})
"The only children given OPENAI_API_KEY: the fewer processes hold it, the fewer can leak it."


def child_specs(config: UpConfig) -> list[ChildSpec]:
    base = {
        **{k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
        "VOXRELAY_BUS_PUBLISH": config.bus_publish,
        "VOXRELAY_BUS_SUBSCRIBE": config.bus_subscribe,
        "VOXRELAY_DATA_DIR": str(config.data_dir),
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if config.ice_hosts:
        base["VOXRELAY_ICE_HOSTS"] = config.ice_hosts
    if config.use_simulator:
        base["VOXRELAY_OPENAI_BASE_URL"] = f"http://127.0.0.1:{config.sim_port}/v1"
    specs: list[tuple[str, str, int, dict[str, str]]] = [("bus", "services.bus", 5, {})]
    if config.use_simulator:
        specs.append(("openai_sim", "services.openai_sim", 3, {
            "VOXRELAY_SIM_HOST": "127.0.0.1", "VOXRELAY_SIM_PORT": str(config.sim_port)}))
    specs += [
        ("recorder-1", "services.recorder", 4, {}),
        ("mixer-1", "services.mixer", 3, {}),
        ("openai_link-1", "services.openai_link", 2, {}),
    ]
    specs += [(f"media_edge-{i + 1}", "services.media_edge", 1, {}) for i in range(config.edges)]
    specs.append(("signaling-1", "services.signaling", 0, {
        "VOXRELAY_HTTP_HOST": config.host, "VOXRELAY_HTTP_PORT": str(config.http_port),
        "VOXRELAY_TLS": "1" if config.tls else "0"}))
    result = []
    for name, module, stage, extra in specs:
        env = {**base, "VOXRELAY_INSTANCE": name, **extra}
        if module in KEY_HOLDERS and "OPENAI_API_KEY" in os.environ:
            env["OPENAI_API_KEY"] = os.environ["OPENAI_API_KEY"]
        port = metrics_port(config, name)
        if port:
            env["VOXRELAY_METRICS_PORT"] = str(port)
        result.append(ChildSpec(name, module, env, stage))
    return result


METRICS_OFFSETS = {"bus": 0, "recorder-1": 1, "mixer-1": 2, "openai_link-1": 3}
"Per-service /metrics ports from --metrics-port: these, then media_edge-N at 3 + N."


def metrics_port(config: UpConfig, name: str) -> int:
    """The /metrics port of child ``name`` (0: none; signaling serves its own HTTP port)."""
    if not config.metrics_base_port:
        return 0
    if name in METRICS_OFFSETS:
        return config.metrics_base_port + METRICS_OFFSETS[name]
    if name.startswith("media_edge-"):
        return config.metrics_base_port + 3 + int(name.removeprefix("media_edge-"))
    return 0


class Supervisor:
    def __init__(self, config: UpConfig) -> None:
        self.config = config
        self.children = [Child(spec) for spec in child_specs(config)]
        self._stop = asyncio.Event()
        self._signals = 0
        self._exit_code = 0

    def request_stop(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("second %s: killing every child", signal.Signals(signum).name)
            for child in self.children:
                child.kill()
            os._exit(130)
        logger.info("%s: stopping voxrelay", signal.Signals(signum).name)
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_stop, signum)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            async with asyncio.TaskGroup() as tg:
                for child in self.children:
                    await child.start()
                    tg.create_task(self._watch(child), name=f"watch-{child.spec.name}")
                ready = tg.create_task(self._announce_when_ready())
                await self._stop.wait()
                ready.cancel()
                await self._stop_in_stages()
        finally:
            for child in self.children:
                child.kill()
        return self._exit_code

    async def _watch(self, child: Child) -> None:
        if await child.watch() is not None and not self._stop.is_set():
            logger.error("voxrelay cannot start as configured: stopping")
            self._exit_code = 1
            self._stop.set()

    def _all_alive(self, health: dict[str, object]) -> bool:
        """Whether every bus-connected child has a live instance in signaling's view."""
        services = health.get("services")
        if not isinstance(services, dict):
            return False
        alive = {i.get("instance") for instances in services.values() for i in instances}
        expected = {c.spec.name for c in self.children
                    if c.spec.name.split("-")[0] in services}
        return expected <= alive

    async def _announce_when_ready(self) -> None:
        url = self.config.url
        async with aiohttp.ClientSession() as http:
            try:
                async with asyncio.timeout(READY_TIMEOUT_S):
                    while True:
                        try:
                            # ssl=False: its own child; no need to verify a self-signed certificate.
                            async with http.get(f"{url}/healthz", ssl=False) as resp:
                                if resp.status == 200 and self._all_alive(await resp.json()):
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.2)
            except TimeoutError:
                logger.error("the stack did not become healthy within %.0f s", READY_TIMEOUT_S)
                return
        mode = "the built-in simulator" if self.config.use_simulator else "the OpenAI API"
        ca = self.config.data_dir / "tls" / "ca.pem"
        trust = f"; other devices trust {ca}" if self.config.tls and ca.exists() else ""
        sys.stdout.write(f"voxrelay up on {url} (Realtime: {mode}; "
                         f"{self.config.edges} media edge(s); data in {self.config.data_dir}"
                         f"{trust})\n")
        admin_key = self.config.data_dir / ADMIN_KEY_FILE
        public = self.config.host not in ("127.0.0.1", "::1", "localhost")
        if public and not os.environ.get("VOXRELAY_ADMIN_KEY") and admin_key.exists():
            sys.stdout.write(f"starting a conversation needs the admin key in {admin_key} "
                             "(the page asks for it once per browser)\n")
        if self.config.metrics_base_port:
            ports = ", ".join(f"{c.spec.name} :{metrics_port(self.config, c.spec.name)}"
                              for c in self.children if metrics_port(self.config, c.spec.name))
            sys.stdout.write(f"metrics: {ports}, signaling {url}/metrics; "
                             f"voxrelay status --url {url}\n")
        sys.stdout.flush()

    async def _stop_in_stages(self) -> None:
        for stage in sorted({c.spec.stage for c in self.children}):
            group = [c for c in self.children if c.spec.stage == stage]
            codes = await asyncio.gather(*(c.stop(STOP_DEADLINE_S) for c in group))
            for child, code in zip(group, codes, strict=True):
                logger.info("stopped %s (exit %s)", child.spec.name, code)
