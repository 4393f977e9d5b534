"""The user API's request models: one msgspec Struct per JSON body or query string.

Each model is both the validator of its route and the source of its part of `/openapi.json`
(`msgspec.json.schema_components`): a constraint lives in one place, so the document cannot
drift from what the server accepts.  A refusal is the API's 400 `{"error": {"code",
"message"}}`; the code comes from the model (per field where routes name them apart) and the
message names the field.  Parsing a request into its model, and wording the refusals, is
`request_parsing.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

import msgspec

from ..core.naming import LABEL_PATTERN


class RequestModel(msgspec.Struct, kw_only=True):
    """Base of the request models: how a refusal of each field is coded."""

    error_code: ClassVar[str] = "invalid_request"
    field_codes: ClassVar[Mapping[str, str]] = {}
    # At least one field must be given (`minProperties: 1` in the document).
    at_least_one: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.at_least_one and all(
            getattr(self, name) is msgspec.UNSET for name in self.__struct_fields__
        ):
            names = ", ".join(f"`{name}`" for name in self.__struct_fields__)
            raise ValueError(f"Give at least one of {names}.")


# ---- bodies ------------------------------------------------------------------------------

MAX_TEXT = 4096
MAX_PROMPT = 4000
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"

# What `to` may be: digits in international format (a leading `+` and spaces between digits
# are allowed and removed), or a jid: a phone's, a group's, or a LID.  Surrounding whitespace
# is ignored.  ASCII digits only.
RECIPIENT_PATTERN = (
    r"^\s*(?:\+?(?: *[0-9]){8,15}"
    r"|[0-9]{8,15}@s\.whatsapp\.net"
    r"|[0-9]{6,30}(?:-[0-9]{6,20})?@g\.us"
    r"|[0-9]{6,30}@lid)\s*$"
)


class SendMessage(RequestModel):
    """`POST /api/whatsapp/messages`.  Other keys are ignored."""

    error_code: ClassVar[str] = "invalid_message"
    field_codes: ClassVar[Mapping[str, str]] = {"to": "invalid_recipient", "text": "invalid_text"}

    to: Annotated[
        str,
        msgspec.Meta(
            pattern=RECIPIENT_PATTERN,
            description="a phone number in international format (digits, optionally with `+`"
            " and spaces) or a jid (`…@s.whatsapp.net`, `…@g.us`, `…@lid`)",
            examples=["5511988887777", "+55 11 98888 7777", "5511988887777@s.whatsapp.net"],
        ),
    ]
    text: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_TEXT,
            # Something besides whitespace, and no NUL (PostgreSQL's text cannot hold it: the
            # message would be sent, then fail to be stored).
            pattern=r"^\s*[^\s\x00][^\x00]*$",
            description=f"a non-empty string of at most {MAX_TEXT} characters,"
            " not only whitespace, without NUL characters",
        ),
    ]

    def recipient(self) -> str:
        """`to` as Evolution takes it: no spaces, no `+`."""
        return self.to.strip().lstrip("+").replace(" ", "")


class QuietHoursBody(msgspec.Struct, forbid_unknown_fields=True):
    """Hours in which no automatic reply is sent, in a time zone (may span midnight)."""

    start: Annotated[str, msgspec.Meta(pattern=CLOCK_PATTERN, description="HH:MM, 00:00-23:59")]
    end: Annotated[str, msgspec.Meta(pattern=CLOCK_PATTERN, description="HH:MM, 00:00-23:59")]
    timezone: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=64,
            description="an IANA time zone name such as America/Sao_Paulo",
        ),
    ]


class SettingsChange(RequestModel, forbid_unknown_fields=True):
    """`PATCH /api/whatsapp/settings`: any of these; an unknown key is refused."""

    error_code: ClassVar[str] = "invalid_settings"
    at_least_one: ClassVar[bool] = True

    auto_reply: Annotated[bool, msgspec.Meta(description="true or false")] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    auto_reply_prompt: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_PROMPT,
                pattern=r"^[^\x00]*$",
                description=f"text of at most {MAX_PROMPT} characters, without NUL characters",
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    auto_reply_per_contact_hour: (
        Annotated[int, msgspec.Meta(ge=1, le=100, description="replies per contact per hour")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    auto_reply_per_instance_day: (
        Annotated[int, msgspec.Meta(ge=1, le=100_000, description="replies per instance per day")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    auto_reply_quiet_hours: QuietHoursBody | msgspec.UnsetType | None = msgspec.UNSET
    auto_reply_human_pause_min: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=7 * 24 * 60,
                description="no automatic reply in a chat where a human answered within this"
                " many minutes (null: off)",
            ),
        ]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET
    auto_reply_groups: (
        Annotated[bool, msgspec.Meta(description="reply in groups too")] | msgspec.UnsetType
    ) = msgspec.UNSET


class DemoInbound(RequestModel):
    """`POST /api/demo/inbound` (demo mode): a message to the user's own simulated phone."""

    error_code: ClassVar[str] = "invalid_inbound"
    field_codes: ClassVar[Mapping[str, str]] = {
        "from": "invalid_sender",
        "text": "invalid_text",
        "push_name": "invalid_push_name",
    }

    sender: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^\s*\+?(?: *[0-9]){8,15}\s*$",
            description="the sender's phone number, 8 to 15 digits (`+` and spaces allowed)",
        ),
    ] = msgspec.field(name="from")
    text: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=MAX_TEXT,
            pattern=r"^\s*[^\s\x00][^\x00]*$",
            description=f"a non-empty string of at most {MAX_TEXT} characters",
        ),
    ]
    push_name: Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[^\x00]*$")] | None = None

    def phone(self) -> str:
        return self.sender.strip().lstrip("+").replace(" ", "")


class ConnectBody(RequestModel):
    """`POST /api/whatsapp/connect`, optional: `label` connects the user's instance with that
    label, or creates one (up to AUZAP_MAX_INSTANCES_PER_USER).  Other keys are ignored."""

    error_code: ClassVar[str] = "invalid_label"

    label: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=LABEL_PATTERN,
                description="1 to 40 letters, digits, spaces, `.` or `-`, starting with a"
                " letter or digit",
                examples=["sales", "support 2"],
            ),
        ]
        | None
    ) = None


# ---- query strings -----------------------------------------------------------------------

INSTANCE_SELECTOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}$"
# `?instance=<name or label>` of every user route: which of the user's instances (default:
# their primary).  Last in each query model, after the route's own parameters.
InstanceSelector = (
    Annotated[
        str,
        msgspec.Meta(
            pattern=INSTANCE_SELECTOR_PATTERN,
            description="the name (`user_<uuid>` or `user_<uuid>_<n>`) or label of one of the"
            " user's instances; without it, the user's primary instance",
        ),
    ]
    | None
)


class InstanceQuery(RequestModel):
    """`?instance=` alone, for the user routes without other parameters."""

    field_codes: ClassVar[Mapping[str, str]] = {"instance": "invalid_instance"}

    instance: InstanceSelector = None


class PageQuery(RequestModel):
    """`?limit=1..200&before=<cursor>` of the paged lists (newest first)."""

    field_codes: ClassVar[Mapping[str, str]] = {
        "limit": "invalid_limit",
        "before": "invalid_cursor",
        "instance": "invalid_instance",
    }

    limit: Annotated[int, msgspec.Meta(ge=1, le=200, description="page size")] = 50
    before: (
        Annotated[
            str,
            msgspec.Meta(
                max_length=512, description="the `next` cursor of the previous page, as given"
            ),
        ]
        | None
    ) = None
    instance: InstanceSelector = None


class DeleteQuery(RequestModel):
    """`DELETE /api/whatsapp/instance?purge=true|false`."""

    field_codes: ClassVar[Mapping[str, str]] = {
        "purge": "invalid_purge",
        "instance": "invalid_instance",
    }

    purge: Annotated[
        bool, msgspec.Meta(description="also delete the stored contacts, conversations, messages")
    ] = False
    instance: InstanceSelector = None
