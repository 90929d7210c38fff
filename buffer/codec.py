"""Compact stored bodies: store schema v3 (SPEC A9: 30 days on 256 MB of flash).

A v2 row kept the record's canonical JSON as TEXT (~490 B for an order: every
key spelled out, and ``prev`` and ``h`` as 64 hex digits each). v3 keeps the
same bytes, losslessly, in about a third of the space:

``body`` (BLOB)
    one byte naming the preset dictionary, then raw deflate (RFC 1951) of the
    canonical JSON, compressed against that dictionary. The dictionary holds
    a typical record of the kind — every key in canonical order and the
    usual values — so a record costs only what differs from it.
``h``, ``prev`` (BLOB, orders)
    the SM3 chain hash and the previous order's, 32 bytes each (64 hex digits
    are incompressible: deflate spends ~44 B on each). The compressed text is
    the *hashed* text (the record without ``h``) with ``prev``'s value cut to
    ``""``. :func:`to_text` puts ``prev`` back and splices ``,"h":"<hex>"``
    before the last brace: the same bytes the v2 row held, so verification
    is ``SM3(text without h) == h`` as before.

Rows written by v2 (TEXT body, hex ``h``) are read unchanged: every reader
goes through :func:`to_text`, which accepts both, so an upgrade converts
nothing and a rollback (``buffer.migrate.downgrade``) only has to inflate.

Dictionaries are part of the on-flash format: an id, once shipped, never
changes its bytes (``tests/test_store_codec.py`` pins their SM3 digests). A
better dictionary gets a new id; old rows keep naming the old one.

Parameters: ``wbits=-10`` (1 KiB window: every dictionary fits, and
compressor state stays ~5 KiB), ``memLevel=4``, level 6. Measured on orders
(``bench/store.py``): 10 µs to compress, 3.5 µs to inflate on the dev VM.
"""

from __future__ import annotations

import zlib

#: Window bits (negative: raw deflate, no zlib header or checksum — the row is
#: covered by SQLite's own page structure and, for orders, by SM3).
WBITS = -10
#: Compressor memory level: 4 keeps its state small; 8 gained nothing here.
MEM_LEVEL = 4
#: Compression level: 6 is zlib's default; 9 gained < 1 % on orders.
LEVEL = 6

# -- dictionary id 1..6 (frozen: see the module docstring) ------------------
_ORDER_1 = (
    b'"flags":["TOTALIZER_GAP","TOTALIZER_BACK","AMOUNT_MISMATCH","ORDER_GAP",'
    b'"ORDER_COUNTER_BACK","PRICE_BELOW_FLOOR"],'
    b'{"amount":"100.00","ended_at":"2026-01-01T00:00:00.000+08:00","flags":[],'
    b'"grade":"92","nozzle":"p01.a1.n1","nozzle_uid":null,"nseq":1,"order_no":"1",'
    b'"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
    b'"price":"7.89","rid":"p01.a1.n1:1","started_at":"2026-01-01T00:00:00.000+08:00",'
    b'"station":"","totalizer_amount_end":"10.00","totalizer_amount_start":"10.00",'
    b'"totalizer_volume_end":"10.00","totalizer_volume_start":"10.00","volume":"10.00"}'
)
_TANK_1 = (
    b'{"at":"2026-01-01T00:00:00.000+08:00","grade":"92","height_mm":"1000.0",'
    b'"rid":"tank:1:","status":[],"tank":1,"tc_volume_l":"10000.0","temp_c":"20.0",'
    b'"ullage_l":"10000.0","volume_l":"10000.0","water_mm":"0.0","water_volume_l":"0.0"}'
)
_ALARM_1 = (
    b'"PORT_OFFLINE","NOZZLE_OFFLINE","ATG_OFFLINE","BUFFER_OVERFLOW","reason",'
    b'"address","order","previous","counter","missing","totalizer","difference",'
    b'{"at":"2026-01-01T00:00:00.000+08:00","code":"","detail":{},"rid":"p01:",'
    b'"source":"p01.a1.n1","state":"cleared"}{"code":"","detail":{},"rid":"store:",'
    b'"source":"device","state":"raised"}'
)
_NOZZLE_1 = (
    b'{"at":"2026-01-01T00:00:00.000+08:00","components":null,"nozzle":"p01.a1.n1",'
    b'"rid":"p01.a1.n1:state:","state":"fuelling","totalizer_amount":null,'
    b'"totalizer_volume":"10.00"}"state":"lifted","state":"idle","state":"offline"'
)
_DELIVERY_1 = (
    b'{"ended_at":"2026-01-01T00:00:00.000+08:00","end_volume_l":"10000.0","flags":[],'
    b'"grade":"92","rid":"delivery:1:","source":"gauge","start_volume_l":"10000.0",'
    b'"started_at":"2026-01-01T00:00:00.000+08:00","tank":1,"tc_volume_l":"10000.0",'
    b'"volume_l":"10000.0"}'
)
_LEAK_1 = (
    b'{"duration_s":3600,"rate_lph":"0.0","result":"PASS","rid":"leak:1:",'
    b'"started_at":"2026-01-01T00:00:00.000+08:00","tank":1,"test_type":""}'
)

#: Dictionary id → preset dictionary. 0: no dictionary (a kind without one).
DICTIONARIES: dict[int, bytes] = {
    0: b"",
    1: _ORDER_1,
    2: _TANK_1,
    3: _ALARM_1,
    4: _NOZZLE_1,
    5: _DELIVERY_1,
    6: _LEAK_1,
}

#: The dictionary new records of each kind are compressed with.
DICTIONARY_FOR_KIND: dict[str, int] = {
    "order": 1,
    "tank": 2,
    "alarm": 3,
    "nozzle": 4,
    "delivery": 5,
    "leak": 6,
}


class BodyError(ValueError):
    """A stored body that cannot be decoded (unknown dictionary, bad deflate)."""


def encode(kind: str, text: bytes) -> bytes:
    """The stored form of ``text`` (canonical JSON; for orders the hashed text)."""
    ident = DICTIONARY_FOR_KIND.get(kind, 0)
    zdict = DICTIONARIES[ident]
    if zdict:
        c = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS, MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(LEVEL, zlib.DEFLATED, WBITS, MEM_LEVEL)
    return bytes((ident,)) + c.compress(text) + c.flush()


def decode(body: bytes | str) -> str:
    """The text a stored body holds (v3 blob, or a v2 row's TEXT as it is)."""
    if isinstance(body, str):
        return body
    if not body:
        raise BodyError("empty stored body")
    zdict = DICTIONARIES.get(body[0])
    if zdict is None:
        raise BodyError(f"stored body names unknown dictionary {body[0]}")
    try:
        d = zlib.decompressobj(WBITS, zdict) if zdict else zlib.decompressobj(WBITS)
        text = d.decompress(body[1:]) + d.flush()
    except zlib.error as exc:
        raise BodyError(f"stored body does not inflate: {exc}") from exc
    if not d.eof:
        raise BodyError("stored body is truncated")
    return text.decode()


def h_hex(h: bytes | str | None) -> str | None:
    """The chain hash as 64 hex digits (v3 stores 32 bytes, v2 stored hex)."""
    if h is None or isinstance(h, str):
        return h
    return h.hex()


_PREV_EMPTY = b'"prev":""'


def cut_prev(hashed: bytes, prev_hex: str) -> tuple[bytes, bytes | None]:
    """``(text to store, prev as 32 bytes)`` for an order's hashed text.

    The cut is at the first ``"prev":"…"``: in canonical JSON every quote
    inside a string is escaped, so that sequence can only be a key, and the
    top-level key is the first unless a nested object before it has one.
    That case (no order has one today) is detected and stored uncut (prev
    None), so the round trip through :func:`to_text` is exact either way.
    """
    full = b'"prev":"' + prev_hex.encode() + b'"'
    at = hashed.find(full)
    empty = hashed.find(_PREV_EMPTY)
    if at < 0 or 0 <= empty < at:  # to_text would put prev back elsewhere: keep it
        return hashed, None
    return hashed[:at] + _PREV_EMPTY + hashed[at + len(full) :], bytes.fromhex(prev_hex)


def to_text(body: bytes | str, h: bytes | str | None, prev: bytes | None = None) -> str:
    """The record's full canonical JSON as published, from a row of either version.

    v3 orders: ``prev`` is put back into the first ``"prev":""`` and ``h``
    spliced in before the last brace, exactly as
    :meth:`buffer.store.OrderStore.append_orders` built the published body;
    v2 rows (TEXT body) already hold the full text.
    """
    text = decode(body)
    if isinstance(body, str) or h is None:
        return text
    if prev is not None:
        at = text.find('"prev":""')
        if at < 0:
            raise BodyError("stored order has no place for its prev")
        text = f"{text[: at + 8]}{prev.hex()}{text[at + 8 :]}"
    return f'{text[:-1]},"h":"{h_hex(h)}"}}'
