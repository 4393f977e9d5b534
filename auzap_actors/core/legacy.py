"""The instance migration's decision (the seed's `migrate:whatsapp`, CONTRACT §8), pure.

Given our `whatsapp_instances` rows, the instances Evolution lists (`fetchInstances`) and the
webhook events waiting for a name nobody owns, `review` says what is wrong, who fixes it (the
`update` command, a human, or nobody: the service handles it on its own) and the plan of
changes `update` would make.  The command line gathers the inputs and carries the plan out;
running `review` again on the result gives an empty plan, which is what makes a second `update`
a no-op.

What `update` may do, and nothing else: fill a missing `user_id` from a canonical `user_<uuid>`
name, and adopt an Evolution instance named `user_<uuid>` that has no row here (create its
row).  It never renames, deletes or touches anything in Evolution: a name that is not
`user_<uuid>`, a name that disagrees with its row's `user_id`, and a user that two instances
claim are for a human to decide.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .naming import ordinal_for_user, user_id_from_instance_name


class Action(StrEnum):
    UPDATE = "update"  # `instances update` fixes it
    HUMAN = "human"  # needs a human: the command says why and leaves it alone
    NONE = "none"  # nothing to do: the service handles it (or retention does)


class Kind(StrEnum):
    """Every kind of problem `check` counts, in the order it prints them."""

    NO_USER_ID = "no_user_id"
    NO_USER_ID_BAD_NAME = "no_user_id_bad_name"
    BAD_NAME = "bad_name"
    NAME_USER_MISMATCH = "name_user_mismatch"
    USER_CLAIMED_TWICE = "user_claimed_twice"
    UNKNOWN_USER = "unknown_user"
    ONLY_IN_EVOLUTION = "only_in_evolution"
    ONLY_IN_EVOLUTION_BAD_NAME = "only_in_evolution_bad_name"
    ONLY_HERE = "only_here"
    ORPHANS_ADOPTABLE = "orphans_adoptable"
    ORPHANS_OWNED = "orphans_owned"
    ORPHANS_FOREIGN = "orphans_foreign"
    ORPHANS_UNKNOWN = "orphans_unknown"


# (what it is, who fixes it, what happens) per kind: the lines `check` prints.
KINDS: dict[Kind, tuple[str, Action, str]] = {
    Kind.NO_USER_ID: (
        "instances without user_id (name user_<uuid>)",
        Action.UPDATE,
        "update fills user_id from the name",
    ),
    Kind.NO_USER_ID_BAD_NAME: (
        "instances without user_id (other names)",
        Action.HUMAN,
        "no user can be read from the name: set user_id by hand, or delete the row",
    ),
    Kind.BAD_NAME: (
        "names not matching user_<uuid> (with a user_id)",
        Action.HUMAN,
        "Evolution cannot rename: the user reconnects (a new user_<uuid>), then delete the old",
    ),
    Kind.NAME_USER_MISMATCH: (
        "name user_<uuid> of another user than user_id",
        Action.HUMAN,
        "decide whose instance it is",
    ),
    Kind.USER_CLAIMED_TWICE: (
        "user_id already taken by another instance",
        Action.HUMAN,
        "one instance per user: decide which one stays",
    ),
    Kind.UNKNOWN_USER: (
        "user of the name not in auth.users (Supabase)",
        Action.HUMAN,
        "the user was deleted, or belongs to another project",
    ),
    Kind.ONLY_IN_EVOLUTION: (
        "in Evolution, not in our table (user_<uuid>)",
        Action.UPDATE,
        "update adopts it (creates its row)",
    ),
    Kind.ONLY_IN_EVOLUTION_BAD_NAME: (
        "in Evolution, not in our table (other names)",
        Action.HUMAN,
        "not ours by name: delete it in Evolution or leave it to its owner",
    ),
    Kind.ONLY_HERE: (
        "in our table, not in Evolution",
        Action.NONE,
        "created again in Evolution at the user's next connect",
    ),
    Kind.ORPHANS_ADOPTABLE: (
        "orphan webhook events (instance update adopts)",
        Action.UPDATE,
        "update adopts the instance; its actor applies them",
    ),
    Kind.ORPHANS_OWNED: (
        "orphan webhook events (instance has a row now)",
        Action.NONE,
        "applied when the instance's actor starts",
    ),
    Kind.ORPHANS_FOREIGN: (
        "orphan webhook events (Evolution instance not ours)",
        Action.HUMAN,
        "see the instance above; deleted by retention meanwhile",
    ),
    Kind.ORPHANS_UNKNOWN: (
        "orphan webhook events (name unknown everywhere)",
        Action.NONE,
        "late events of deleted instances: deleted by retention",
    ),
}


@dataclass(frozen=True, slots=True)
class Row:
    """One `whatsapp_instances` row (what the review needs of it)."""

    name: str
    user_id: str | None


@dataclass(frozen=True, slots=True)
class Remote:
    """One instance of Evolution's `fetchInstances`."""

    name: str
    evolution_id: str
    connection_status: str = "close"
    number: str | None = None
    profile_name: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    name: str
    count: int = 1  # rows (events for the orphan kinds, 1 for instances)
    detail: str = ""

    @property
    def action(self) -> Action:
        return KINDS[self.kind][1]


@dataclass(frozen=True, slots=True)
class FillUserId:
    name: str
    user_id: str

    def describe(self) -> str:
        return f"set user_id of {self.name} to {self.user_id}"


@dataclass(frozen=True, slots=True)
class Adopt:
    remote: Remote
    user_id: str

    @property
    def name(self) -> str:
        return self.remote.name

    def describe(self) -> str:
        return (
            f"adopt {self.remote.name} (Evolution id {self.remote.evolution_id},"
            f" {self.remote.connection_status}) for user {self.user_id}"
        )


Change = FillUserId | Adopt


@dataclass(frozen=True, slots=True)
class Review:
    findings: list[Finding] = field(default_factory=list)
    plan: list[Change] = field(default_factory=list)

    def count(self, kind: Kind) -> int:
        return sum(f.count for f in self.findings if f.kind is kind)

    def needs(self, action: Action) -> bool:
        return any(f.action is action for f in self.findings)

    def exit_code(self) -> int:
        """0: nothing to do; 1: `update` has work; 3: what is left needs a human."""
        if self.plan:
            return 1
        return 3 if self.needs(Action.HUMAN) else 0


def review(
    rows: Iterable[Row],
    remotes: Iterable[Remote],
    orphans: Mapping[str, int],
    *,
    known_users: set[str] | None = None,
    only: str | None = None,
    several: bool = False,
) -> Review:
    """What is wrong and what `update` would change.

    `orphans`: pending events per name that no row owned when they came (outcome `orphan`, or
    not yet flagged).  `known_users`: the users `auth.users` has, among those the names name;
    None where the table is the standalone one (the update then creates the user, as the
    service does for a user it sees in a valid token).  `only`: review one instance name.
    """
    rows = list(rows)
    ours = {row.name: row for row in rows}
    theirs = {remote.name: remote for remote in remotes}
    owner_of: dict[str, str] = {row.user_id: row.name for row in rows if row.user_id}
    findings: list[Finding] = []
    plan: list[Change] = []
    adopted: set[str] = set()

    def wanted(name: str) -> bool:
        return only is None or name == only

    def user_ok(name: str, user: str) -> bool:
        """The user may be given to `name`: not another instance's, and known to auth."""
        holder = owner_of.get(user)
        if holder is not None and holder != name:
            findings.append(Finding(Kind.USER_CLAIMED_TWICE, name, detail=f"{user} has {holder}"))
            return False
        if known_users is not None and user not in known_users:
            findings.append(Finding(Kind.UNKNOWN_USER, name, detail=user))
            return False
        return True

    for row in rows:
        if not wanted(row.name):
            continue
        from_name = user_id_from_instance_name(row.name)
        if row.user_id is None:
            if from_name is None:
                findings.append(Finding(Kind.NO_USER_ID_BAD_NAME, row.name))
            elif user_ok(row.name, str(from_name)):
                findings.append(Finding(Kind.NO_USER_ID, row.name, detail=str(from_name)))
                plan.append(FillUserId(row.name, str(from_name)))
                owner_of[str(from_name)] = row.name
        elif from_name is None:
            # With several instances per user (`several`: the schema allows them), a user's
            # `user_<uuid>_<n>` is one of theirs, not a stray name.
            if not (several and ordinal_for_user(row.name, row.user_id) is not None):
                findings.append(Finding(Kind.BAD_NAME, row.name, detail=f"user {row.user_id}"))
        elif uuid.UUID(row.user_id) != from_name:
            findings.append(
                Finding(Kind.NAME_USER_MISMATCH, row.name, detail=f"user_id {row.user_id}")
            )
        if row.name not in theirs:
            findings.append(Finding(Kind.ONLY_HERE, row.name))

    for remote in theirs.values():
        if remote.name in ours or not wanted(remote.name):
            continue
        from_name = user_id_from_instance_name(remote.name)
        if from_name is None:
            findings.append(Finding(Kind.ONLY_IN_EVOLUTION_BAD_NAME, remote.name))
        elif user_ok(remote.name, str(from_name)):
            findings.append(Finding(Kind.ONLY_IN_EVOLUTION, remote.name, detail=str(from_name)))
            plan.append(Adopt(remote, str(from_name)))
            owner_of[str(from_name)] = remote.name
            adopted.add(remote.name)

    for name, count in sorted(orphans.items()):
        if count <= 0 or not wanted(name):
            continue
        if name in adopted:
            kind = Kind.ORPHANS_ADOPTABLE
        elif name in ours:
            kind = Kind.ORPHANS_OWNED
        elif name in theirs:
            kind = Kind.ORPHANS_FOREIGN
        else:
            kind = Kind.ORPHANS_UNKNOWN
        findings.append(Finding(kind, name, count=count))
    return Review(findings, plan)
