"""What a scenario runs against: an embedded PostgreSQL, the simulator and the service, each
in its own process (the load generator is a fourth), on free loopback ports, torn down after.

The service runs exactly as in production (`python -m auzap_actors serve`), with real secrets
and the bench's no-op route (`AUZAP_BENCH_NOOP=1`); its log goes to a file in the run's
directory, which is printed when something fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..core.naming import instance_name_for
from ..store.embedded import EmbeddedPostgres
from ..web.auth import mint_user_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}; log: {log}\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout} s; log: {log}\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Stack:
    workdir: Path
    dsn: str
    sim_url: str
    url: str
    port: int
    api_key: str
    jwt_secret: str
    webhook_secret: str
    admin_token: str
    service: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)
    service_log: Path = Path("service.log")
    users: list[uuid.UUID] = field(default_factory=list)

    def wait_ready(self, timeout: float = 60) -> None:
        _wait_http(f"{self.url}/readyz", self.service, self.service_log, timeout)

    def restart_service(self, extra_env: dict[str, str] | None = None) -> None:
        """Stop the service and start it again (same port, same secrets) without waiting for
        it to be ready: the caller times that."""
        _stop(self.service)
        self.service = _start_service({**self.env, **(extra_env or {})}, self.service_log)

    def cpu_seconds(self) -> float:
        """User + system CPU time the service process has used (Linux /proc/<pid>/stat)."""
        stat = Path(f"/proc/{self.service.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        """The service's /metrics as {"name{label=value,...}": value}."""
        answer = httpx.get(
            f"{self.url}/metrics",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=120,  # walks every actor; slow while thousands boot
        )
        answer.raise_for_status()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    @property
    def instances(self) -> list[str]:
        return [instance_name_for(user) for user in self.users]

    def rss_mib(self) -> float:
        """The service process's resident memory (Linux /proc)."""
        status = Path(f"/proc/{self.service.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
        return kib / 1024

    def open_instances(
        self, count: int, progress: bool = True, organization: uuid.UUID | None = None
    ) -> None:
        """Create `count` users' instances through the API (their users in `organization`
        when given) and scan each at the simulator."""
        with httpx.Client(timeout=30) as http:
            for n in range(count):
                user = uuid.uuid4()
                token = mint_user_token(self.jwt_secret, user, organization)
                answer = http.post(
                    f"{self.url}/api/whatsapp/connect",
                    headers={"Authorization": f"Bearer {token}"},
                )
                answer.raise_for_status()
                name = instance_name_for(user)
                self._scan(http, name)
                self.users.append(user)
                if progress and count >= 10 and (n + 1) % max(1, count // 10) == 0:
                    print(f"  {n + 1}/{count} instances open", file=sys.stderr, flush=True)

    def _scan(self, http: httpx.Client, name: str) -> None:
        deadline = time.monotonic() + 30
        while True:  # the QR comes from the simulator a moment after connect
            answer = http.post(
                f"{self.sim_url}/_sim/instances/{name}/scan", json={"phone": _phone(name)}
            )
            if answer.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"scan of {name} failed: {answer.status_code} {answer.text}")
            time.sleep(0.1)


def _phone(name: str) -> str:
    return "5511" + str(int(uuid.UUID(name.removeprefix("user_")).int % 10**9)).zfill(9)


def _start_service(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "auzap_actors", "serve"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_stack(
    extra_env: dict[str, str] | None = None, sim_state: Path | None = None
) -> Iterator[Stack]:
    """The three processes; `sim_state`: a simulator state file to start from (its instances
    are loaded at the simulator's start)."""
    workdir = Path(tempfile.mkdtemp(prefix="auzap-bench-"))
    pg = EmbeddedPostgres(workdir)
    procs: list[subprocess.Popen[bytes]] = []
    stack: Stack | None = None
    try:
        dsn = pg.start()
        api_key = secrets.token_urlsafe(24)
        sim_port, port = free_port(), free_port()
        sim_log = workdir / "simulator.log"
        sim_command = [
            # `--api-key=`: a random key may begin with "-", which argparse would take for a flag.
            sys.executable, "-m", "auzap_actors", "evolution-sim", f"--api-key={api_key}",
            "--port", str(sim_port),
        ]  # fmt: skip
        if sim_state is not None:
            sim_command += ["--state-file", str(sim_state)]
        with sim_log.open("wb") as out:
            sim = subprocess.Popen(sim_command, stdout=out, stderr=subprocess.STDOUT)
        procs.append(sim)
        sim_url = f"http://127.0.0.1:{sim_port}"
        _wait_http(f"{sim_url}/_sim/instances", sim, sim_log, timeout=180)
        secrets_env = {
            "AUZAP_JWT_SECRET": secrets.token_hex(32),
            "AUZAP_WEBHOOK_SECRET": secrets.token_hex(32),
            "AUZAP_ADMIN_TOKEN": secrets.token_hex(16),
        }
        env = {
            **os.environ,
            **secrets_env,
            "DATABASE_URL": dsn,
            "EVOLUTION_API_URL": sim_url,
            "EVOLUTION_API_KEY": api_key,
            "AUZAP_PORT": str(port),
            "AUZAP_DATA_DIR": str(workdir / "data"),
            "AUZAP_BENCH_NOOP": "1",
            **(extra_env or {}),
        }
        env.pop("AUZAP_DEMO", None)
        service_log = workdir / "service.log"
        service = _start_service(env, service_log)
        stack = Stack(
            workdir=workdir,
            dsn=dsn,
            sim_url=sim_url,
            url=f"http://127.0.0.1:{port}",
            port=port,
            api_key=api_key,
            jwt_secret=secrets_env["AUZAP_JWT_SECRET"],
            webhook_secret=secrets_env["AUZAP_WEBHOOK_SECRET"],
            admin_token=secrets_env["AUZAP_ADMIN_TOKEN"],
            service=service,
            env=env,
            service_log=service_log,
        )
        stack.wait_ready()
        yield stack
    finally:
        if stack is not None:
            _stop(stack.service)
        for proc in reversed(procs):
            _stop(proc)
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start_loadgen(
    stack: Stack,
    path: str,
    instances: list[str],
    run_id: str,
    concurrency: int,
    duration: float,
    port: int | None = None,
) -> subprocess.Popen[bytes]:
    """A load generator process against `path` (on the service, or on `port`);
    `finish_loadgen` reads its JSON result."""
    command = [
        sys.executable, "-m", "auzap_actors.bench.loadgen",
        "--port", str(port or stack.port), "--path", path, "--run-id", run_id,
        "--concurrency", str(concurrency), "--duration", str(duration),
    ]  # fmt: skip
    for name in instances:
        command += ["--instance", name]
    # The secret goes through the environment, not the command line (`ps` shows that).
    env = {**os.environ, "AUZAP_WEBHOOK_SECRET": stack.webhook_secret}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_loadgen(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode(errors='replace')}")
    result: dict[str, object] = json.loads(out)
    return result


def run_loadgen(
    stack: Stack,
    path: str,
    instances: list[str],
    run_id: str,
    concurrency: int,
    duration: float,
    port: int | None = None,
) -> dict[str, object]:
    """One load generator run against `path`, waited for; its JSON result."""
    proc = start_loadgen(stack, path, instances, run_id, concurrency, duration, port)
    return finish_loadgen(proc, timeout=duration + 120)


@contextmanager
def running_baseline(stack: Stack) -> Iterator[int]:
    """The FastAPI + uvicorn + asyncpg reference server (`bench.baseline`) on the stack's
    database, as its own process; yields its port."""
    port = free_port()
    log = stack.workdir / "baseline.log"
    env = {
        **os.environ,
        "DATABASE_URL": stack.dsn,
        "AUZAP_WEBHOOK_SECRET": stack.webhook_secret,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auzap_actors.bench.baseline", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield port
    finally:
        _stop(proc)
