"""What the platform's answer to a POST of envelopes says, and whether to believe it.

Sans-IO: status, headers and body in → :class:`Outcome` out. The rules are
docs/uplink-protocol.md "HTTP transport" (a proposed clarification of
platform-interface.md, whose contract is MQTT's):

- **200** with a body that is an envelope of type ``ack``, sealed by the
  platform under a key the device holds, ``dev`` this device, its body
  ``{"acked": [seq, ...], "rejected": [{"seq", "code", "message"}, ...]}``:
  the answer. Every seq it names must be one this request carried; one that is
  not makes the whole answer a forgery or a mix-up, and nothing is acked.
- anything else at 200 (not JSON, not sealed, the wrong device, a tag that
  fails — a captive portal, a proxy, a forger) is **no answer**: nothing is
  marked sent, and the same bytes go again after a backoff.
- **408, 429, 500, 502, 503, 504**: not processed, try the same bytes again
  (``Retry-After`` seconds honoured, up to the caller's cap).
- any other status (400, 401, 403, 404, 413, …): refused; the session ends
  as a failed link, and the records go again in a later one.

Why the ack is sealed and bound to seqs: a record is marked sent (and may be
evicted) on the ack alone, so the ack must come from the platform and be for
these envelopes. The seal proves the first — only the platform and the device
hold the key — even over plain ``http://`` or a TLS proxy the operator did
not choose; the seqs prove the second, because every envelope gets a new
seq (buffer/store.py ``next_seq``): an old ack, replayed, names seqs no later
request carries, and a request sent again with the same bytes is answered for
those very envelopes (the platform is idempotent by seq).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from uplink.envelope import EnvelopeError, open_envelope

#: Statuses that say "not processed now, the same request later".
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

#: The answer's envelope type.
ACK_TYPE = "ack"


@dataclass(frozen=True, slots=True)
class Outcome:
    #: Seqs of this request the platform has stored (now or before).
    acked: frozenset[int] = frozenset()
    #: Seqs of this request it refused: code (and message), from its answer.
    rejected: Mapping[int, str] = field(default_factory=dict)
    #: Why the request as a whole has no believable answer (None: it has).
    failure: str | None = None
    #: Send the same bytes again (after a backoff), rather than ending the session.
    retry: bool = False
    #: The server's ``Retry-After`` in seconds, when it gave one.
    retry_after_s: float | None = None

    @property
    def answered(self) -> bool:
        return self.failure is None


def read_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    sent: Collection[int],
    dev: str,
    keys: Mapping[str, bytes],
) -> Outcome:
    """The outcome of one POST that carried the envelopes ``sent`` (their seqs)."""
    if status != 200:
        retry = status in RETRY_STATUSES
        return Outcome(
            failure=f"HTTP {status}",
            retry=retry,
            retry_after_s=retry_after(headers.get("retry-after")) if retry else None,
        )
    try:
        opened = open_envelope(body, keys, topic_dev=dev)
    except EnvelopeError as exc:
        return Outcome(failure=f"answer not sealed for this device ({exc.code})", retry=True)
    except ValueError as exc:  # a key of the wrong size: our bug, told as such
        return Outcome(failure=f"answer not opened: {exc}", retry=True)
    if opened.type != ACK_TYPE:
        return Outcome(failure=f"answer of type {opened.type!r}, not {ACK_TYPE!r}", retry=True)
    acked = opened.body.get("acked", [])
    rejected_items = opened.body.get("rejected", [])
    if not isinstance(acked, list) or not isinstance(rejected_items, list):
        return Outcome(failure="ack body: acked and rejected must be lists", retry=True)
    rejected: dict[int, str] = {}
    for item in rejected_items:
        if not isinstance(item, dict) or not _is_seq(item.get("seq")):
            return Outcome(failure="ack body: a rejected item without its seq", retry=True)
        rejected[item["seq"]] = f"{item.get('code', '?')}: {item.get('message', '')}".strip()
    if not all(_is_seq(s) for s in acked):
        return Outcome(failure="ack body: acked holds something other than seqs", retry=True)
    named = set(acked) | set(rejected)
    foreign = named - set(sent)
    if foreign:
        # A genuine platform answers for the envelopes it was sent: this is an
        # answer to another request (replayed, or crossed), and none of it counts.
        example = min(foreign)
        return Outcome(failure=f"ack names seq {example}, not in this request", retry=True)
    return Outcome(acked=frozenset(acked) - set(rejected), rejected=rejected)


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (RFC 9110 §10.2.3: delay-seconds; an HTTP
    date is not read — the device's clock may be off — and the backoff applies)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(int(value.strip()))
