"""Peak memory of `auzap-actors export` (and `import`) by the size of the backup: rows seeded
with SQL `generate_series` (seconds for 100k messages), then the real command run in its own
process, which reports its own peak RSS (`ru_maxrss`).

tests/test_export_memory.py runs it at CI sizes; the figures at 10k and 100k messages come
from a manual run against a scratch database:

    DATABASE_URL=postgresql://... python -m tests.export_memory 10000 100000
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONVERSATIONS = 20

# Runs the command line in this process and reports the process's peak RSS on stderr:
# VmHWM, not ru_maxrss, which Linux carries over exec from the forked parent (a pytest
# process's 100 MiB would hide the command's own figure).
_MEASURED = (
    "import sys\n"
    "from auzap_actors.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
    "print('peak_rss_kib', hwm.split()[1], file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@dataclass(frozen=True, slots=True)
class Measured:
    messages: int
    export_rss_mib: float
    export_s: float
    file_mib: float
    import_rss_mib: float
    import_s: float


async def seed(pool: Any, messages: int) -> uuid.UUID:
    """A user, their instance, CONVERSATIONS chats and `messages` messages spread over them."""
    user = uuid.uuid4()
    name = f"user_{user}"
    per_chat = max(1, messages // CONVERSATIONS)
    await pool.execute("INSERT INTO auth.users (id) VALUES ($1)", user)
    await pool.execute(
        "INSERT INTO whatsapp_instances (instance_name, user_id) VALUES ($1, $2)", name, user
    )
    await pool.execute(
        "INSERT INTO contacts (instance_name, jid, phone_number, push_name)"
        " SELECT $1, '55119' || lpad(g::text, 8, '0') || '@s.whatsapp.net',"
        "  '55119' || lpad(g::text, 8, '0'), 'Contato ' || g FROM generate_series(1, $2) g",
        name,
        CONVERSATIONS,
    )
    await pool.execute(
        "INSERT INTO conversations (instance_name, remote_jid, contact_id, last_message_at)"
        " SELECT $1, jid, id, now() FROM contacts WHERE instance_name = $1",
        name,
    )
    await pool.execute(
        "INSERT INTO messages (instance_name, conversation_id, remote_jid, wa_message_id,"
        " from_me, push_name, type, text, status, status_rank, sent_at, raw)"
        " SELECT $1, c.id, c.remote_jid, 'W' || md5(c.remote_jid || g), g % 3 = 0, 'Contato',"
        "  'text', 'mensagem ' || g || ' — olá, tudo bem? Vamos marcar a reunião amanhã.',"
        "  'delivered', 3, now() - g * interval '1 second', '{}'::jsonb"
        " FROM conversations c, generate_series(1, $2) g WHERE c.instance_name = $1",
        name,
        per_chat,
    )
    return user


def run_measured(env: dict[str, str], *args: str) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of `auzap-actors <args>` in a process of its own."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited {done.returncode}: {done.stdout} {done.stderr}")
    line = next(x for x in done.stderr.splitlines() if x.startswith("peak_rss_kib"))
    return int(line.split()[1]) / 1024, elapsed


def measure(database_url: str, user: uuid.UUID, messages: int, workdir: Path) -> Measured:
    """Export the user's instance to a file, wipe its rows, import the file: both measured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env["DATABASE_URL"] = database_url
    path = workdir / f"export-{messages}.ndjson"
    export_rss, export_s = run_measured(env, "export", "--user", str(user), "-o", str(path))
    wipe = (
        f"DELETE FROM messages WHERE instance_name = 'user_{user}';"
        f" DELETE FROM conversations WHERE instance_name = 'user_{user}';"
        f" DELETE FROM contacts WHERE instance_name = 'user_{user}';"
    )
    subprocess.run(
        [sys.executable, "-c", _WIPE, database_url, wipe], check=True, env=env, timeout=300
    )
    import_rss, import_s = run_measured(env, "import", str(path))
    return Measured(
        messages,
        export_rss,
        export_s,
        path.stat().st_size / 2**20,
        import_rss,
        import_s,
    )


_WIPE = (
    "import sys, asyncio, asyncpg\n"
    "async def main():\n"
    "    conn = await asyncpg.connect(sys.argv[1])\n"
    "    await conn.execute(sys.argv[2])\n"
    "    await conn.close()\n"
    "asyncio.run(main())\n"
)


def main(sizes: list[int]) -> None:
    import trio_asyncio

    from auzap_actors.store.db import open_pool

    database_url = os.environ["DATABASE_URL"]

    async def seed_all() -> list[uuid.UUID]:
        async with open_pool(database_url, min_size=1, max_size=1) as pool:
            return [await seed(pool, size) for size in sizes]

    users = trio_asyncio.run(seed_all)
    with tempfile.TemporaryDirectory() as workdir:
        for size, user in zip(sizes, users, strict=True):
            m = measure(database_url, user, size, Path(workdir))
            print(
                f"{m.messages:>7} messages: export peak RSS {m.export_rss_mib:.1f} MiB,"
                f" {m.export_s:.1f} s, file {m.file_mib:.1f} MiB;"
                f" import peak RSS {m.import_rss_mib:.1f} MiB, {m.import_s:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [10_000, 100_000])
