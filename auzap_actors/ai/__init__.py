"""AI responders for auto-reply: one small interface (`Responder`), an OpenAI-compatible
chat-completions client and an offline responder for demo mode.  Knows only `core`."""

from .offline import OfflineResponder
from .openai import OpenAIResponder
from .responder import ReplyRequest, Responder, ResponderError, Turn

__all__ = [
    "OfflineResponder",
    "OpenAIResponder",
    "ReplyRequest",
    "Responder",
    "ResponderError",
    "Turn",
]
