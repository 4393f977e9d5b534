"""`auzap-actors instances check|update|migrate <name>` (CONTRACT §8, the seed's
`migrate:whatsapp`): gather our rows, Evolution's instances and the orphan events, let the pure
review (core/legacy.py) say what is wrong, and carry out its plan.

Exit codes: 0 nothing left to do; 1 `update` has work (check), or a change failed (update);
3 what is left needs a human (listed, with the reason); 2 the command could not run
(configuration, the database or Evolution unreachable).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, TextIO

import asyncpg

from ..config import ConfigError, ToolSettings
from ..core.legacy import KINDS, Action, Adopt, Change, FillUserId, Kind, Remote, Review, review
from ..evolution.client import EvolutionClient
from ..evolution.errors import EvolutionError
from ..evolution.retry import RetryPolicy
from ..store import legacy
from ..store.multi import multi_instance_ready
from .db import tool_pool
from .progress import Progress

log = logging.getLogger(__name__)

DETAILS_PER_KIND = 20  # names listed per problem (`--verbose`: all)


@dataclass(frozen=True, slots=True)
class Options:
    command: str  # check, update, migrate
    name: str | None = None  # migrate: the one instance
    dry_run: bool = False
    verbose: bool = False
    as_json: bool = False
    tty: bool | None = None  # progress bar on a terminal (None: ask the stream)


@dataclass(slots=True)
class Inputs:
    review: Review
    rows: int
    remotes: int
    create_users: bool


async def run_instances(settings: ToolSettings, options: Options, out: TextIO) -> int:
    if settings.evolution_api_url is None:
        raise ConfigError(
            "EVOLUTION_API_URL (and EVOLUTION_API_KEY) are required: the instances commands"
            " compare our table with Evolution's"
        )
    client = EvolutionClient(
        settings.evolution_api_url,
        settings.evolution_api_key,
        retry=RetryPolicy(attempts=3, initial_s=0.5, max_s=5.0),
    )
    async with client, tool_pool(settings) as pool:
        try:
            inputs = await _gather(pool, client, options.name)
            if options.command == "migrate" and not _exists(inputs, options.name):
                print(
                    f"no instance named {options.name!r} here, in Evolution or in the inbox",
                    file=out,
                )
                return 1
            if options.command == "check":
                return _report(inputs, options, out)
            return await _update(pool, client, inputs, options, out)
        except EvolutionError as exc:
            # Its text names the call and the answer, never the API key.
            print(f"Evolution API could not be read: {exc}", file=out)
            return 2


def _exists(inputs: Inputs, name: str | None) -> bool:
    """`migrate <name>`: the name is a row, an Evolution instance or has orphan events."""
    return name is not None and bool(inputs.rows or inputs.remotes or inputs.review.findings)


async def _gather(pool: Any, client: EvolutionClient, only: str | None) -> Inputs:
    rows = await legacy.read_rows(pool)
    remotes = [
        Remote(
            name=info.name,
            evolution_id=info.id,
            connection_status=info.connection_status,
            number=info.number,
            profile_name=info.profile_name,
        )
        for info in await client.fetch_instances()
        if info.name
    ]
    orphans = await legacy.read_orphans(pool)
    standalone = await legacy.auth_is_standalone(pool)
    # Once `migrate --multi-instance` ran, a user's `user_<uuid>_<n>` rows are legitimate.
    several = await multi_instance_ready(pool)
    known = None
    if not standalone:
        # Supabase: only users auth.users has may be given an instance.
        first = review(rows, remotes, orphans, only=only, several=several)
        candidates = {change.user_id for change in first.plan}
        known = await legacy.known_users(pool, candidates) if candidates else set()
    result = review(rows, remotes, orphans, known_users=known, only=only, several=several)
    if only is not None:
        rows = [row for row in rows if row.name == only]
        remotes = [remote for remote in remotes if remote.name == only]
    return Inputs(result, len(rows), len(remotes), create_users=standalone)


def _table(result: Review, out: TextIO) -> None:
    print(f"{'problem':<52} {'count':>6}  what happens", file=out)
    for kind, (label, action, fix) in KINDS.items():
        count = result.count(kind)
        who = {Action.UPDATE: "", Action.HUMAN: "NEEDS A HUMAN: ", Action.NONE: "no action: "}
        line = f"{label:<52} {count:>6}"
        print(f"{line}  {who[action]}{fix}" if count else line, file=out)


def _details(result: Review, verbose: bool, out: TextIO) -> None:
    for kind in Kind:
        found = [f for f in result.findings if f.kind is kind]
        if not found:
            continue
        print(f"{KINDS[kind][0]}:", file=out)
        shown = found if verbose else found[:DETAILS_PER_KIND]
        for finding in shown:
            extra = f" ({finding.detail})" if finding.detail else ""
            events = f": {finding.count} event(s)" if kind.name.startswith("ORPHANS") else ""
            print(f"  {finding.name}{extra}{events}", file=out)
        if len(found) > len(shown):
            print(f"  ... and {len(found) - len(shown)} more (--verbose lists all)", file=out)


def _as_json(inputs: Inputs, exit_code: int, out: TextIO, **extra: Any) -> None:
    result = inputs.review
    body = {
        "rows": inputs.rows,
        "evolution_instances": inputs.remotes,
        "counts": {kind.value: result.count(kind) for kind in Kind},
        "needs_human": [
            {"kind": f.kind.value, "name": f.name, "detail": f.detail}
            for f in result.findings
            if f.action is Action.HUMAN
        ],
        "plan": [change.describe() for change in result.plan],
        "exit": exit_code,
        **extra,
    }
    print(json.dumps(body, indent=2), file=out)


def _closing(result: Review, out: TextIO) -> int:
    code = result.exit_code()
    if code == 1:
        print(
            f"exit 1: `auzap-actors instances update` has {len(result.plan)} change(s)"
            " to make (--dry-run prints them)",
            file=out,
        )
    elif code == 3:
        print("exit 3: what is left needs a human (listed above)", file=out)
    else:
        print("exit 0: nothing to do", file=out)
    return code


def _report(inputs: Inputs, options: Options, out: TextIO) -> int:
    result = inputs.review
    if options.as_json:
        _as_json(inputs, result.exit_code(), out)
        return result.exit_code()
    print(f"{inputs.rows} instance(s) in our table, {inputs.remotes} in Evolution", file=out)
    _table(result, out)
    _details(result, options.verbose, out)
    return _closing(result, out)


async def _update(
    pool: Any, client: EvolutionClient, inputs: Inputs, options: Options, out: TextIO
) -> int:
    plan = inputs.review.plan
    human = [f for f in inputs.review.findings if f.action is Action.HUMAN]
    if not options.as_json:
        print(f"{inputs.rows} instance(s) in our table, {inputs.remotes} in Evolution", file=out)
    if not plan:
        if options.as_json:
            _as_json(inputs, 3 if human else 0, out, changed=0)
        else:
            print("nothing to change: every instance update can fix is fixed", file=out)
            if human:
                _table(inputs.review, out)
                _details(inputs.review, options.verbose, out)
        return 3 if human else 0
    if options.dry_run:
        if options.as_json:
            _as_json(inputs, 3 if human else 0, out, dry_run=True, changed=0)
        else:
            print(f"plan ({len(plan)} change(s), dry run: nothing is changed):", file=out)
            for change in plan:
                print(f"  would {change.describe()}", file=out)
            if human:
                print(f"and {len(human)} problem(s) for a human, left alone:", file=out)
                _details(_only_human(inputs.review), options.verbose, out)
        return 3 if human else 0

    done, skipped, failed = await _apply(pool, plan, inputs.create_users, options, out)
    after = await _gather(pool, client, options.name)
    left_human = after.review.needs(Action.HUMAN)
    code = 1 if failed else (3 if left_human else 0)
    filled = sum(1 for c in done if isinstance(c, FillUserId))
    adopted = sum(1 for c in done if isinstance(c, Adopt))
    if options.as_json:
        _as_json(
            after,
            code,
            out,
            changed=len(done),
            filled=filled,
            adopted=adopted,
            skipped=skipped,
            failed=failed,
        )
        return code
    print(
        f"summary: {filled} user_id(s) filled, {adopted} instance(s) adopted,"
        f" {skipped} already done by someone else, {len(failed)} failed",
        file=out,
    )
    for name, reason in failed:
        print(f"  failed: {name}: {reason}", file=out)
    if filled:
        print(
            "note: an actor already running keeps its old user_id in memory until it"
            " restarts (POST /admin/instances/<name>/restart, or the next start)",
            file=out,
        )
    print("after the update:", file=out)
    _table(after.review, out)
    _details(_only_human(after.review), options.verbose, out)
    return code


def _only_human(result: Review) -> Review:
    return Review([f for f in result.findings if f.action is Action.HUMAN], [])


async def _apply(
    pool: Any, plan: list[Change], create_users: bool, options: Options, out: TextIO
) -> tuple[list[Change], int, list[tuple[str, str]]]:
    done: list[Change] = []
    failed: list[tuple[str, str]] = []
    skipped = 0
    stream = out if options.tty is not None else None
    with Progress("updating instances", len(plan), stream=stream, tty=options.tty) as progress:
        for change in plan:
            try:
                if isinstance(change, FillUserId):
                    changed = await legacy.fill_user_id(pool, change, create_user=create_users)
                else:
                    changed = await legacy.adopt(pool, change, create_user=create_users)
            except asyncpg.IntegrityConstraintViolationError as exc:
                # One row refused (a user taken meanwhile, a user Supabase does not have):
                # reported, and the others go on.
                failed.append((change.name, str(exc).splitlines()[0]))
            else:
                if changed:
                    done.append(change)
                else:
                    skipped += 1
            progress.advance()
    return done, skipped, failed
