"""What operators read about a running service: its Prometheus metrics (`metrics.py`), the
recent history of each instance (`journal.py`) and its logs (`logs.py`: JSON or text lines,
a correlation id per request and per webhook event, secrets redacted).

A leaf just above `core` (it imports nothing else of the package), so `evolution` and
`actors` may record into it without an arrow pointing up.  `core` stays pure and never
imports it; the web reaches it only through `actors.facade`.  Nothing here is process-global
except what Python's logging is by nature (configured once, by the launcher): every registry,
counter and ring belongs to an object the running service owns, so several services can run
in one process (the tests do).
"""
