#!/usr/bin/env python3
"""Test vectors for the stockd wire protocol, version 1.

An implementation of protocol/PROTOCOL.md written from the document alone
(not from the Swift codec): a layout-driven encoder, a decoder that applies
the checks in the order the spec gives (header bits, opcode, structure,
field values in layout order), and the vectors themselves. Every vector is
checked against this decoder before it is written, so a vector whose
expected outcome disagrees with the spec's rules cannot be emitted.

Usage: python3 gen.py            (writes requests.json, responses.json, malformed.json next to it)
       python3 gen.py --check    (exits 1 if the files on disk differ from what it would write)

Python 3 standard library only; output is deterministic (no randomness,
no clock, fixed key order).
"""

import json
import os
import struct
import sys

# ---------------------------------------------------------------------------
# Constants from PROTOCOL.md (§2, §4, §5, §7)

HEADER_SIZE = 12
MAX_FRAME = 65536  # default max_frame, prefix included (§2, §7)
MAX_SKU = 64
MAX_SHORT = 64  # customer, idempotency key, order reference, client name
MAX_QUANTITY = 1_000_000
MAX_TTL_MS = 3_600_000
MAX_BUNDLE_LINES = 16
MAX_STOCK = 1 << 40
MAX_LIST_PAGE = 1000
MAX_STAGE_LINES = 4096  # §4 STAGE, §7 (and the frame within max_frame)
LIST_END = 0xFFFFFFFF
RESPONSE_FLAG = 0x01
STOCK_SET_KNOWN_FLAGS = 0x07
# §9: credit a SUBSCRIBE (0 ... 1,048,576) or a CREDIT (1 ... 1,048,576) may grant
MAX_FEED_CREDIT = 1_048_576
FEED_FROM_OLDEST = 0
FEED_FROM_NOW = 0xFFFFFFFFFFFFFFFF
# §10, §7: node id, cluster name 1-64 bytes of text; a primary address 0-64;
# nodes in ISR_SET, standbys in CLUSTER_STATUS 0-16
MAX_NODE = 64
MAX_ISR_NODES = 16
ROLE_PRIMARY = 1
ROLE_STANDBY = 2

# §9 Event kinds. A SUBSCRIBE `kinds` mask has bit k for kind k; bit 0 (progress
# is not an event) and bits 13-15 must be 0.
EVENT_KINDS = {
    "progress": 0,
    "stock_set": 1,
    "stock_adjusted": 2,
    "reserved": 3,
    "confirmed": 4,
    "released": 5,
    "expired": 6,
    "extended": 7,
    "low_stock": 8,
    "sold_out": 9,
    "back_in_stock": 10,
    "backup_changed": 11,
    "term_started": 12,
}
KINDS_MASK = 0xFFFF & ~0x0001 & ~0xE000  # bits 1-12
assert KINDS_MASK == sum(1 << k for k in EVENT_KINDS.values() if k != 0)
ZERO_TOKEN = "00" * 16  # "zeros when the event concerns no token"

OPCODES = {
    "HELLO": 0x01,
    "PING": 0x02,
    "RESERVE": 0x10,
    "RESERVE_BUNDLE": 0x11,
    "CONFIRM": 0x12,
    "RELEASE": 0x13,
    "EXTEND": 0x14,
    "STOCK_SET": 0x20,
    "STOCK_ADJUST": 0x21,
    "STOCK_GET": 0x22,
    "STOCK_LIST": 0x23,
    "BACKUP_RELEASE": 0x24,
    "BACKUP_HOLD": 0x25,
    "STAGE": 0x26,
    "STATS": 0x30,
    "SUBSCRIBE": 0x40,
    "EVENT": 0x41,
    "CREDIT": 0x42,
    # §10 replication and cluster control
    "REPL_HELLO": 0x50,
    "REPL_ROUND": 0x51,
    "REPL_ACK": 0x52,
    "REPL_SNAPSHOT": 0x53,
    "ROLE": 0x58,
    "FENCE": 0x59,
    "ISR_SET": 0x5A,
    "CLUSTER_STATUS": 0x5B,
}
OPCODE_NAMES = {v: k for k, v in OPCODES.items()}
# §4: EVENT is sent by the server only; a request with its opcode is answered
# UNKNOWN_OPCODE. CREDIT is never answered (its only answer is a failure:
# INVALID_ARGUMENT on a connection that is not a feed), so it has no OK layout.
# §10: REPL_ROUND and REPL_SNAPSHOT are sent by the primary only (like EVENT);
# REPL_ACK is never answered (like CREDIT; INVALID_ARGUMENT off a replication
# connection).
SERVER_ONLY = {"EVENT", "REPL_ROUND", "REPL_SNAPSHOT"}
NEVER_ANSWERED = {"CREDIT", "REPL_ACK"}
REQUEST_OPCODES = set(OPCODES) - SERVER_ONLY
ANSWERED_OPCODES = set(OPCODES) - NEVER_ANSWERED

STATUSES = {
    "OK": 0,
    "OUT_OF_STOCK": 1,
    "UNKNOWN_SKU": 2,
    "TOKEN_UNKNOWN": 3,
    "TOKEN_EXPIRED": 4,
    "TOKEN_CONFIRMED": 5,
    "TOKEN_RELEASED": 6,
    "STOCK_CHANGED": 7,
    "CUSTOMER_LIMIT": 8,
    "QUANTITY_INVALID": 9,
    "TTL_TOO_LONG": 10,
    "INSUFFICIENT_AVAILABLE": 11,
    "IDEMPOTENCY_CONFLICT": 12,
    "INVALID_SKU": 13,
    "INVALID_ARGUMENT": 14,
    "OFFSET_COMPACTED": 15,
    "FEED_UNAVAILABLE": 16,
    "INSUFFICIENT_BACKUP": 17,
    "STAGE_REFUSED": 18,
    "NOT_PRIMARY": 19,
    "NOT_ENOUGH_REPLICAS": 20,
    "UNCOMMITTED": 21,
    "STALE_EPOCH": 22,
    "TRUNCATE_TO": 23,
    "DIVERGED": 24,
    "CONFIG_MISMATCH": 25,
    "MALFORMED": 32,
    "FRAME_TOO_LARGE": 33,
    "UNKNOWN_OPCODE": 34,
    "UNSUPPORTED_VERSION": 35,
    "UNAUTHENTICATED": 36,
    "AUTH_FAILED": 37,
    "FORBIDDEN": 38,
    "AT_CAPACITY": 39,
    "BUSY": 40,
    "RATE_LIMITED": 41,
    "HELLO_OUT_OF_ORDER": 42,
    "SHUTTING_DOWN": 43,
    "INTERNAL": 44,
    "STORAGE_FAILED": 45,
}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}

# ---------------------------------------------------------------------------
# Layouts. A layout is a list of (field, type). Types:
#   "u8" "u16" "u32" "u64" "i64"   little-endian integers
#   "str8"                          u8 count + bytes
#   "token"                         16 opaque bytes (32 hex digits in JSON)
#   ("opt", int_type, bit)          STOCK_SET field meaningful only when `flags` has `bit`
#   ("list", count_field, layout)   count_field × layout, as a JSON array
#   ("struct", layout)              a nested object (StockInfo)
#   "rest"                          every byte left in the payload, opaque ({"hex": ...} in JSON,
#                                   always, even when empty or UTF-8): REPL_ROUND's records,
#                                   REPL_SNAPSHOT's chunk (§10)

STOCK_INFO = [
    ("on_hand", "u64"),
    ("available", "u64"),
    ("reserved", "u64"),
    ("confirmed", "u64"),
    ("low_stock_threshold", "u32"),
    ("per_customer_limit", "u32"),
    ("reservations", "u64"),
    ("backup", "u64"),
]

STAGE_LINE = [("on_hand", "u64"), ("backup", "u64"), ("low_stock_threshold", "u32"),
              ("per_customer_limit", "u32"), ("sku", "str8")]

REQUEST_LAYOUTS = {
    "HELLO": [("version", "u16"), ("client_name", "str8"), ("credential", "str8")],
    "PING": [],
    "RESERVE": [("quantity", "u32"), ("ttl_ms", "u32"), ("sku", "str8"), ("customer", "str8"),
                ("idempotency_key", "str8")],
    "RESERVE_BUNDLE": [("ttl_ms", "u32"), ("customer", "str8"), ("idempotency_key", "str8"),
                       ("line_count", "u8"),
                       ("lines", ("list", "line_count", [("quantity", "u32"), ("sku", "str8")]))],
    "CONFIRM": [("token", "token"), ("quantity", "u32"), ("order_reference", "str8")],
    "RELEASE": [("token", "token")],
    "EXTEND": [("token", "token"), ("ttl_ms", "u32")],
    "STOCK_SET": [("flags", "u8"), ("on_hand", "u64"), ("expected_on_hand", ("opt", "u64", 0x01)),
                  ("low_stock_threshold", ("opt", "u32", 0x02)),
                  ("per_customer_limit", ("opt", "u32", 0x04)), ("sku", "str8")],
    "STOCK_ADJUST": [("delta", "i64"), ("reason", "u8"), ("sku", "str8")],
    "STOCK_GET": [("sku", "str8")],
    "STOCK_LIST": [("cursor", "u32"), ("limit", "u16")],
    "BACKUP_RELEASE": [("quantity", "u64"), ("sku", "str8")],
    "BACKUP_HOLD": [("quantity", "u64"), ("sku", "str8")],
    "STAGE": [("line_count", "u16"), ("lines", ("list", "line_count", STAGE_LINE))],
    "STATS": [],
    "SUBSCRIBE": [("from", "u64"), ("credit", "u32"), ("kinds", "u16"), ("sku_prefix", "str8")],
    "CREDIT": [("credit", "u32")],
    # §10
    "REPL_HELLO": [("fingerprint", "u64"), ("highest_epoch", "u64"), ("last_epoch", "u64"), ("last_seq", "u64"),
                   ("node", "str8"), ("cluster", "str8")],
    "REPL_ACK": [("epoch", "u64"), ("durable", "u64")],
    "ROLE": [("role", "u8"), ("epoch", "u64"), ("primary", "str8")],
    "FENCE": [("until_ns", "u64")],
    "ISR_SET": [("epoch", "u64"), ("count", "u8"), ("entries", ("list", "count", [("node", "str8")]))],
    "CLUSTER_STATUS": [],
}
assert set(REQUEST_LAYOUTS) == REQUEST_OPCODES

# §9 Event: the OK payload of an EVENT frame
EVENT = [
    ("offset", "u64"),
    ("time_ms", "u64"),
    ("kind", "u8"),
    ("line", "u8"),
    ("lines", "u8"),
    ("quantity", "i64"),
    ("aux", "u64"),
    ("token", "token"),
    ("sku", "str8"),
    ("order_reference", "str8"),
    ("customer", "str8"),
]

# §10 CLUSTER_STATUS: the OK answer (role 0 standalone, 1 primary, 2 standby; 0-16
# entries, one per standby connected to a primary; an entry's flags: bit 0 only)
CLUSTER_STATUS = [
    ("role", "u8"),
    ("epoch", "u64"),
    ("durable", "u64"),
    ("committed", "u64"),
    ("node", "str8"),
    ("primary", "str8"),
    ("count", "u8"),
    ("entries", ("list", "count", [("node", "str8"), ("acked", "u64"), ("lag_ms", "u32"), ("flags", "u8")])),
]
CLUSTER_FLAG_IN_WAIT_SET = 0x01

RESPONSE_OK_LAYOUTS = {
    "HELLO": [("version", "u16"), ("role", "u8"), ("max_frame", "u32"), ("max_ttl_ms", "u32"),
              ("default_ttl_ms", "u32"), ("max_bundle_lines", "u16"), ("max_sku_length", "u16"),
              ("max_inflight", "u32"), ("server_name", "str8")],
    "PING": [],
    "RESERVE": [("token", "token"), ("expires_at_ms", "u64"), ("available", "u64")],
    "RESERVE_BUNDLE": [("token", "token"), ("expires_at_ms", "u64")],
    "CONFIRM": [("confirmed", "u32"), ("returned", "u32")],
    "RELEASE": [("released", "u32")],
    "EXTEND": [("expires_at_ms", "u64")],
    "STOCK_SET": [("stock_info", ("struct", STOCK_INFO))],
    "STOCK_ADJUST": [("stock_info", ("struct", STOCK_INFO))],
    "STOCK_GET": [("stock_info", ("struct", STOCK_INFO))],
    "STOCK_LIST": [("next_cursor", "u32"), ("count", "u16"),
                   ("entries", ("list", "count", [("sku", "str8"), ("stock_info", ("struct", STOCK_INFO))]))],
    "BACKUP_RELEASE": [("stock_info", ("struct", STOCK_INFO))],
    "BACKUP_HOLD": [("stock_info", ("struct", STOCK_INFO))],
    "STAGE": [("lines", "u16"), ("created", "u16")],
    "STATS": [("count", "u16"), ("entries", ("list", "count", [("name", "str8"), ("value", "u64")]))],
    "SUBSCRIBE": [("start", "u64"), ("end", "u64")],
    "EVENT": EVENT,
    # §10
    "REPL_HELLO": [("epoch", "u64"), ("start", "u64"), ("committed", "u64")],
    "REPL_ROUND": [("epoch", "u64"), ("end", "u64"), ("count", "u16"), ("records", "rest")],
    "REPL_SNAPSHOT": [("epoch", "u64"), ("snapshot_seq", "u64"), ("offset", "u64"), ("total", "u64"),
                      ("chunk", "rest")],
    "ROLE": [("role", "u8"), ("epoch", "u64"), ("last_seq", "u64")],
    "FENCE": [("committed", "u64")],
    "ISR_SET": [("committed", "u64")],
    "CLUSTER_STATUS": CLUSTER_STATUS,
}
assert set(RESPONSE_OK_LAYOUTS) == ANSWERED_OPCODES

# Failure payloads by status (§5); statuses not listed carry no payload.
FAILURE_LAYOUTS = {
    "OUT_OF_STOCK": [("line", "u8"), ("available", "u64")],
    "UNKNOWN_SKU": [("line", "u8")],
    "STOCK_CHANGED": [("current_on_hand", "u64")],
    "CUSTOMER_LIMIT": [("line", "u8"), ("remaining", "u64")],
    "TTL_TOO_LONG": [("max_ttl_ms", "u32")],
    "INSUFFICIENT_AVAILABLE": [("available", "u64")],
    "FRAME_TOO_LARGE": [("max_frame", "u32")],
    "UNSUPPORTED_VERSION": [("min", "u16"), ("max", "u16")],
    "OFFSET_COMPACTED": [("oldest", "u64")],
    "INSUFFICIENT_BACKUP": [("backup", "u64")],
    # 1 to 4,096 entries; an entry's `status` is a §5 code (INSUFFICIENT_AVAILABLE or AT_CAPACITY)
    "STAGE_REFUSED": [("count", "u16"),
                      ("entries", ("list", "count", [("line", "u16"), ("status", "u8"), ("value", "u64")]))],
    # §5, §10
    "NOT_PRIMARY": [("epoch", "u64"), ("primary", "str8")],
    "NOT_ENOUGH_REPLICAS": [("in_sync", "u8"), ("required", "u8")],
    "STALE_EPOCH": [("epoch", "u64")],
    "TRUNCATE_TO": [("seq", "u64")],
    "CONFIG_MISMATCH": [("field", "str8")],
}

INT_FORMATS = {"u8": "<B", "u16": "<H", "u32": "<I", "u64": "<Q", "i64": "<q"}
assert sum(struct.calcsize(INT_FORMATS[t]) for _, t in STOCK_INFO) == 56  # §4 "StockInfo (56 bytes)"

# ---------------------------------------------------------------------------
# JSON forms of byte strings: UTF-8 text when well-formed, else {"hex": ...}


def to_json_bytes(b):
    try:
        return b.decode("utf-8")  # strict: no overlongs, surrogates or > U+10FFFF
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def from_json_bytes(v):
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    if isinstance(v, bytes):
        return v
    return v.encode("utf-8")


# ---------------------------------------------------------------------------
# Layout-driven encoding (JSON-form fields -> payload bytes)


def encode_layout(layout, fields):
    out = bytearray()
    flags = fields.get("flags", 0)
    for name, typ in layout:
        v = fields[name]
        if isinstance(typ, tuple) and typ[0] == "opt":
            _, base, bit = typ
            assert (v is None) == (flags & bit == 0), (name, v, flags)
            out += struct.pack(INT_FORMATS[base], 0 if v is None else v)
        elif isinstance(typ, tuple) and typ[0] == "list":
            _, count_field, item = typ
            assert fields[count_field] == len(v), (count_field, fields[count_field], len(v))
            for element in v:
                out += encode_layout(item, element)
        elif isinstance(typ, tuple) and typ[0] == "struct":
            out += encode_layout(typ[1], v)
        elif typ == "str8":
            b = from_json_bytes(v)
            assert len(b) <= 255
            out += bytes([len(b)]) + b
        elif typ == "rest":
            assert isinstance(v, dict) and set(v) == {"hex"}, (name, v)  # always {"hex": ...}
            out += bytes.fromhex(v["hex"])
        elif typ == "token":
            t = bytes.fromhex(v)
            assert len(t) == 16
            out += t
        else:
            out += struct.pack(INT_FORMATS[typ], v)
    return bytes(out)


def header(length, opcode, flags, status, reserved, request_id):
    return struct.pack("<IBBBBI", length, opcode, flags, status, reserved, request_id)


def frame(opcode, request_id, payload, flags=0, status=0, reserved=0):
    return header(8 + len(payload), opcode, flags, status, reserved, request_id) + payload


# ---------------------------------------------------------------------------
# Decoding: framing (§2, §6), structure, then values (§4 "Field rules")


class Malformed(Exception):
    """The payload does not match its layout."""


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Malformed()
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b


def read_layout(r, layout):
    """Reads the structure only: raw ints, byte strings, nested lists/structs."""
    out = {}
    for name, typ in layout:
        if isinstance(typ, tuple) and typ[0] == "opt":
            out[name] = struct.unpack(INT_FORMATS[typ[1]], r.take(struct.calcsize(INT_FORMATS[typ[1]])))[0]
        elif isinstance(typ, tuple) and typ[0] == "list":
            out[name] = [read_layout(r, typ[2]) for _ in range(out[typ[1]])]
        elif isinstance(typ, tuple) and typ[0] == "struct":
            out[name] = read_layout(r, typ[1])
        elif typ == "str8":
            out[name] = r.take(r.take(1)[0])
        elif typ == "rest":
            out[name] = r.take(len(r.data) - r.pos)
        elif typ == "token":
            out[name] = r.take(16)
        else:
            fmt = INT_FORMATS[typ]
            out[name] = struct.unpack(fmt, r.take(struct.calcsize(fmt)))[0]
    return out


def jsonify(layout, raw):
    """Raw decoded values -> the vectors' JSON form."""
    out = {}
    flags = raw.get("flags", 0)
    for name, typ in layout:
        v = raw[name]
        if isinstance(typ, tuple) and typ[0] == "opt":
            out[name] = v if flags & typ[2] else None
        elif isinstance(typ, tuple) and typ[0] == "list":
            out[name] = [jsonify(typ[2], e) for e in v]
        elif isinstance(typ, tuple) and typ[0] == "struct":
            out[name] = jsonify(typ[1], v)
        elif typ == "str8":
            out[name] = to_json_bytes(v)
        elif typ == "rest":
            out[name] = {"hex": v.hex()}
        elif typ == "token":
            out[name] = v.hex()
        else:
            out[name] = v
    return out


def parse_frame(buf, max_frame=MAX_FRAME):
    """§2 and §6: ("need_more",) | ("length_too_small", length) |
    ("too_large", length, request_id) | ("frame", total, header fields, payload)."""
    if len(buf) < 4:
        return ("need_more",)
    length = struct.unpack_from("<I", buf, 0)[0]
    if length < 8:
        return ("length_too_small", length)
    if len(buf) < HEADER_SIZE:
        return ("need_more",)
    _, opcode, flags, status, reserved, request_id = struct.unpack_from("<IBBBBI", buf, 0)
    total = length + 4
    if total > max_frame:
        return ("too_large", length, request_id)
    if len(buf) < total:
        return ("need_more",)
    return ("frame", total, opcode, flags, status, reserved, request_id, bytes(buf[HEADER_SIZE:total]))


def is_text(b):
    """UTF-8 without control characters (no byte below 0x20, no 0x7F)."""
    if any(c < 0x20 or c == 0x7F for c in b):
        return False
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


class Rejected(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


def check_sku(b):
    if not (1 <= len(b) <= MAX_SKU and is_text(b)):
        raise Rejected("INVALID_SKU")


def check_opaque(b):
    if len(b) > MAX_SHORT:
        raise Rejected("INVALID_ARGUMENT")


def check_text(b):
    if not (len(b) <= MAX_SHORT and is_text(b)):
        raise Rejected("INVALID_ARGUMENT")


def check_node(b):
    """§10: a node id or cluster name, 1 to 64 bytes of text."""
    if not (1 <= len(b) <= MAX_NODE and is_text(b)):
        raise Rejected("INVALID_ARGUMENT")


def check_epoch(e):
    """§10: an epoch a request names is at least 1."""
    if e < 1:
        raise Rejected("INVALID_ARGUMENT")


def check_quantity(q):
    if not (1 <= q <= MAX_QUANTITY):
        raise Rejected("QUANTITY_INVALID")


def check_ttl(t):
    if t > MAX_TTL_MS:
        raise Rejected("TTL_TOO_LONG")


def check_values(op, f):
    """Each field's value, in layout order (§4 "Field rules", last paragraph)."""
    if op == "HELLO":
        check_text(f["client_name"])  # credential: 0..255 opaque bytes, always fits a str8
    elif op == "RESERVE":
        check_quantity(f["quantity"])
        check_ttl(f["ttl_ms"])
        check_sku(f["sku"])
        check_opaque(f["customer"])
        check_opaque(f["idempotency_key"])
    elif op == "RESERVE_BUNDLE":
        check_ttl(f["ttl_ms"])
        check_opaque(f["customer"])
        check_opaque(f["idempotency_key"])
        if not (1 <= f["line_count"] <= MAX_BUNDLE_LINES):
            raise Rejected("INVALID_ARGUMENT")
        seen = set()
        for line in f["lines"]:
            check_quantity(line["quantity"])
            check_sku(line["sku"])
            if line["sku"] in seen:
                raise Rejected("INVALID_ARGUMENT")
            seen.add(line["sku"])
    elif op == "CONFIRM":
        if f["quantity"] > MAX_QUANTITY:  # 0 = everything the token holds
            raise Rejected("QUANTITY_INVALID")
        check_text(f["order_reference"])
    elif op == "EXTEND":
        check_ttl(f["ttl_ms"])
    elif op == "STOCK_SET":
        flags = f["flags"]
        if flags & ~STOCK_SET_KNOWN_FLAGS:
            raise Rejected("INVALID_ARGUMENT")
        if f["on_hand"] > MAX_STOCK:
            raise Rejected("QUANTITY_INVALID")
        for name, bit in (("expected_on_hand", 0x01), ("low_stock_threshold", 0x02), ("per_customer_limit", 0x04)):
            if flags & bit == 0 and f[name] != 0:
                raise Rejected("INVALID_ARGUMENT")
            if name == "expected_on_hand" and f[name] > MAX_STOCK:
                raise Rejected("QUANTITY_INVALID")
        check_sku(f["sku"])
    elif op == "STOCK_ADJUST":
        if f["delta"] == 0 or abs(f["delta"]) > MAX_STOCK:
            raise Rejected("QUANTITY_INVALID")
        if f["reason"] > 6:
            raise Rejected("INVALID_ARGUMENT")
        check_sku(f["sku"])
    elif op == "STOCK_GET":
        check_sku(f["sku"])
    elif op == "STOCK_LIST":
        if f["limit"] > MAX_LIST_PAGE:
            raise Rejected("INVALID_ARGUMENT")
    elif op == "BACKUP_RELEASE":
        if f["quantity"] > MAX_STOCK:  # 0 = every backup unit
            raise Rejected("QUANTITY_INVALID")
        check_sku(f["sku"])
    elif op == "BACKUP_HOLD":
        if not (1 <= f["quantity"] <= MAX_STOCK):
            raise Rejected("QUANTITY_INVALID")
        check_sku(f["sku"])
    elif op == "STAGE":
        # §4 STAGE: line_count, then per line, in line order, the values in layout
        # order (on_hand, backup; threshold and limit take any value), the SKU, and
        # last whether an earlier line had the same SKU.
        if not (1 <= f["line_count"] <= MAX_STAGE_LINES):
            raise Rejected("INVALID_ARGUMENT")
        seen = set()
        for line in f["lines"]:
            if line["on_hand"] > MAX_STOCK or line["backup"] > line["on_hand"]:
                raise Rejected("QUANTITY_INVALID")
            check_sku(line["sku"])
            if line["sku"] in seen:  # byte strings: case-sensitive
                raise Rejected("INVALID_ARGUMENT")
            seen.add(line["sku"])
    elif op == "SUBSCRIBE":
        # `from` takes any value here: "beyond end + 1" is judged by the server.
        if f["credit"] > MAX_FEED_CREDIT:
            raise Rejected("INVALID_ARGUMENT")
        if f["kinds"] & ~KINDS_MASK:
            raise Rejected("INVALID_ARGUMENT")
        check_text(f["sku_prefix"])  # a prefix, not a SKU: INVALID_ARGUMENT, and may be empty
    elif op == "CREDIT":
        if not (1 <= f["credit"] <= MAX_FEED_CREDIT):
            raise Rejected("INVALID_ARGUMENT")
    # §10 "Field values": every failure below is INVALID_ARGUMENT (a node name or an
    # address is not a SKU: never INVALID_SKU).
    elif op == "REPL_HELLO":
        # fingerprint, highest_epoch, last_epoch, last_seq: any value (0 = none seen;
        # last_epoch 0 with last_seq > 0 is a journal written before epochs existed).
        check_node(f["node"])
        check_node(f["cluster"])
    elif op == "REPL_ACK":
        check_epoch(f["epoch"])  # durable: any value
    elif op == "ROLE":
        if f["role"] not in (ROLE_PRIMARY, ROLE_STANDBY):
            raise Rejected("INVALID_ARGUMENT")
        check_epoch(f["epoch"])
        check_text(f["primary"])  # 0..64 bytes of text; its host:port form is not judged here
        # then the pair: a primary names no address, a standby names its primary's
        if (f["role"] == ROLE_PRIMARY) == (len(f["primary"]) > 0):
            raise Rejected("INVALID_ARGUMENT")
    elif op == "ISR_SET":
        check_epoch(f["epoch"])
        if f["count"] > MAX_ISR_NODES:
            raise Rejected("INVALID_ARGUMENT")
        seen = set()
        for e in f["entries"]:  # node by node: its text, then whether an earlier node had it
            check_node(e["node"])
            if e["node"] in seen:  # byte strings: case-sensitive
                raise Rejected("INVALID_ARGUMENT")
            seen.add(e["node"])
    # FENCE: until_ns takes any value. CLUSTER_STATUS: empty.


def decode_request(buf, max_frame=MAX_FRAME):
    """-> ("fields", opcode_name, request_id, fields) or ("error", name, extra)."""
    p = parse_frame(buf, max_frame)
    if p[0] == "need_more":
        return ("error", "need_more", {})
    if p[0] == "length_too_small":
        return ("error", "length_too_small", {"length": p[1]})
    if p[0] == "too_large":
        return ("error", "too_large", {"length": p[1], "request_id": p[2]})
    _, total, opcode, flags, status, reserved, request_id, payload = p
    assert total == len(buf), "a vector is exactly one frame"
    try:
        if flags != 0 or status != 0 or reserved != 0:  # 1. header bits
            raise Rejected("MALFORMED")
        # 2. opcode (EVENT, REPL_ROUND, REPL_SNAPSHOT: server to client only)
        if OPCODE_NAMES.get(opcode) not in REQUEST_OPCODES:
            raise Rejected("UNKNOWN_OPCODE")
        op = OPCODE_NAMES[opcode]
        layout = REQUEST_LAYOUTS[op]
        r = Reader(payload)
        try:  # 3. structure: every field present, nothing left over
            raw = read_layout(r, layout)
            if r.pos != len(payload):
                raise Malformed()
        except Malformed:
            raise Rejected("MALFORMED")
        check_values(op, raw)  # 4. values in layout order
    except Rejected as e:
        return ("error", e.status, {})
    return ("fields", op, request_id, jsonify(layout, raw))


def decode_response(buf):
    p = parse_frame(buf)
    assert p[0] == "frame" and p[1] == len(buf)
    _, _, opcode, flags, status, reserved, request_id, payload = p
    assert flags == RESPONSE_FLAG and reserved == 0 and status in STATUS_NAMES
    status_name = STATUS_NAMES[status]
    if status_name == "OK":
        layout = RESPONSE_OK_LAYOUTS[OPCODE_NAMES[opcode]]
    else:
        layout = FAILURE_LAYOUTS.get(status_name, [])
    r = Reader(payload)
    raw = read_layout(r, layout)
    assert r.pos == len(payload)
    return opcode, status_name, request_id, jsonify(layout, raw)


def opcode_json(byte):
    return OPCODE_NAMES.get(byte, "0x%02X" % byte)


def opcode_byte(name):
    return OPCODES[name] if name in OPCODES else int(name, 16)


# ---------------------------------------------------------------------------
# Vector builders


def tok(slot, generation, secret):
    """A token as the server lays it out (slot u32, generation u32, secret u64)."""
    return struct.pack("<IIQ", slot, generation, secret).hex()


def request_vector(name, op, request_id, fields):
    payload = encode_layout(REQUEST_LAYOUTS[op], fields)
    data = frame(OPCODES[op], request_id, payload)
    decoded = decode_request(data)
    assert decoded == ("fields", op, request_id, fields), (name, decoded, fields)
    return {"name": name, "hex": data.hex(), "request_id": request_id, "opcode": op, "fields": fields}


def response_vector(name, op, request_id, status, fields):
    if status == "OK":
        layout = RESPONSE_OK_LAYOUTS[op]
    else:
        layout = FAILURE_LAYOUTS.get(status, [])
    payload = encode_layout(layout, fields)
    data = frame(opcode_byte(op), request_id, payload, flags=RESPONSE_FLAG, status=STATUSES[status])
    decoded = decode_response(data)
    assert decoded == (opcode_byte(op), status, request_id, fields), (name, decoded)
    return {"name": name, "hex": data.hex(), "request_id": request_id, "opcode": op, "status": status,
            "fields": fields}


def malformed_vector(name, data, error):
    """`error` is what the decoder must report; checked against this file's decoder."""
    got = decode_request(data)
    assert got[0] == "error" and got[1] == error, (name, got, error)
    v = {"name": name, "hex": data.hex()}
    if len(data) >= HEADER_SIZE:
        v["request_id"] = struct.unpack_from("<I", data, 8)[0]
        v["opcode"] = opcode_json(data[4])
    v["error"] = error
    if "length" in got[2]:
        v["length"] = got[2]["length"]
    return v


def str8(b):
    b = from_json_bytes(b)
    return bytes([len(b)]) + b


def u32(v):
    return struct.pack("<I", v)


def u16(v):
    return struct.pack("<H", v)


def u64(v):
    return struct.pack("<Q", v)


def i64(v):
    return struct.pack("<q", v)


def raw_request(op, request_id, payload, **hdr):
    return frame(opcode_byte(op), request_id, payload, **hdr)


def reserve_payload(quantity=1, ttl_ms=0, sku=b"JACKET-RED-M", customer=b"", key=b""):
    return u32(quantity) + u32(ttl_ms) + str8(sku) + str8(customer) + str8(key)


def bundle_payload(lines, ttl_ms=0, customer=b"", key=b"", count=None):
    out = u32(ttl_ms) + str8(customer) + str8(key) + bytes([len(lines) if count is None else count])
    for q, sku in lines:
        out += u32(q) + str8(sku)
    return out


def stock_set_payload(flags, on_hand, expected=0, threshold=0, limit=0, sku=b"JACKET-RED-M"):
    return bytes([flags]) + u64(on_hand) + u64(expected) + u32(threshold) + u32(limit) + str8(sku)


def stock_adjust_payload(delta, reason=1, sku=b"JACKET-RED-M"):
    return i64(delta) + bytes([reason]) + str8(sku)


def backup_payload(quantity, sku=b"JACKET-RED-M"):
    """BACKUP_RELEASE and BACKUP_HOLD share a layout: quantity u64, sku str8."""
    return u64(quantity) + str8(sku)


def stage_payload(lines, count=None):
    """lines: (on_hand, backup, low_stock_threshold, per_customer_limit, sku) tuples."""
    out = u16(len(lines) if count is None else count)
    for on_hand, backup, threshold, limit, sku in lines:
        out += u64(on_hand) + u64(backup) + u32(threshold) + u32(limit) + str8(sku)
    return out


def confirm_payload(quantity=0, order=b"", token=None):
    return bytes.fromhex(token or T1) + u32(quantity) + str8(order)


def stock_info(on_hand, available, reserved, confirmed, low_stock_threshold=0, per_customer_limit=0,
               reservations=0, backup=0):
    assert on_hand == available + reserved + confirmed + backup  # §4 StockInfo invariant
    return {"on_hand": on_hand, "available": available, "reserved": reserved, "confirmed": confirmed,
            "low_stock_threshold": low_stock_threshold, "per_customer_limit": per_customer_limit,
            "reservations": reservations, "backup": backup}


T1 = tok(1, 1, 0x0123456789ABCDEF)
T2 = tok(42, 7, 0xFEDCBA9876543210)
T3 = tok(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
SKU = "JACKET-RED-M"
SKU_FR = "VESTE-ÉTÉ-M"  # multibyte UTF-8 (É = c3 89)
SKU_EMOJI = "CAP-\U0001F9E2-L"  # 4-byte UTF-8
SKU_64 = "S" * 32 + "-" + "X" * 31
SKU_64_MB = "É" * 32  # 64 bytes, 32 two-byte scalars
BINARY_KEY = {"hex": "ff00fe01fd02fc03fb04fa05f906f807"}  # opaque, not UTF-8


def reserve(quantity, ttl_ms, sku, customer="", key=""):
    return {"quantity": quantity, "ttl_ms": ttl_ms, "sku": sku, "customer": customer, "idempotency_key": key}


def bundle(lines, ttl_ms=0, customer="", key=""):
    return {"ttl_ms": ttl_ms, "customer": customer, "idempotency_key": key, "line_count": len(lines),
            "lines": [{"quantity": q, "sku": s} for q, s in lines]}


def stock_set(on_hand, sku, expected=None, threshold=None, limit=None):
    flags = (0x01 if expected is not None else 0) | (0x02 if threshold is not None else 0) | \
            (0x04 if limit is not None else 0)
    return {"flags": flags, "on_hand": on_hand, "expected_on_hand": expected, "low_stock_threshold": threshold,
            "per_customer_limit": limit, "sku": sku}


def stage(lines):
    """lines: (on_hand, backup, low_stock_threshold, per_customer_limit, sku) tuples."""
    return {"line_count": len(lines),
            "lines": [{"on_hand": o, "backup": b, "low_stock_threshold": t, "per_customer_limit": lim, "sku": sku}
                      for o, b, t, lim, sku in lines]}


def stage_refused(*entries):
    """entries: (line, status name, value)."""
    return {"count": len(entries),
            "entries": [{"line": line, "status": STATUSES[st], "value": value} for line, st, value in entries]}


def subscribe(from_, credit, kinds=0, sku_prefix=""):
    return {"from": from_, "credit": credit, "kinds": kinds, "sku_prefix": sku_prefix}


def kinds_mask(*names):
    return sum(1 << EVENT_KINDS[n] for n in names)


def event(offset, time_ms, kind, line=0, lines=0, quantity=0, aux=0, token=ZERO_TOKEN, sku="",
          order_reference="", customer=""):
    return {"offset": offset, "time_ms": time_ms, "kind": EVENT_KINDS[kind], "line": line, "lines": lines,
            "quantity": quantity, "aux": aux, "token": token, "sku": sku, "order_reference": order_reference,
            "customer": customer}


def subscribe_payload(from_=0, credit=100, kinds=0, sku_prefix=b""):
    return u64(from_) + u32(credit) + u16(kinds) + str8(sku_prefix)


NOW_MS = 1732665600000  # 2024-11-27 00:00:00 UTC, the vectors' clock

# §10 replication and cluster control
FINGERPRINT = 0x9E3779B97F4A7C15
NODE_A, NODE_B, NODE_C = "node-a", "node-b", "node-c"
CLUSTER = "stockd-eu-1"
ADDR_A = "10.0.0.1:7070"
ADDR_64 = "stockd-primary." + "x" * 44 + ":7070"  # 64 bytes
assert len(ADDR_64) == 64
ROUND_RECORDS = {"hex": (u32(5) + b"\x01\x02\x03\x04\x05" + u32(3) + b"\xaa\xbb\xcc").hex()}  # opaque to the codec


def repl_hello(node=NODE_B, cluster=CLUSTER, fingerprint=FINGERPRINT, highest_epoch=0, last_epoch=0, last_seq=0):
    return {"fingerprint": fingerprint, "highest_epoch": highest_epoch, "last_epoch": last_epoch,
            "last_seq": last_seq, "node": node, "cluster": cluster}


def isr_set(epoch, nodes):
    return {"epoch": epoch, "count": len(nodes), "entries": [{"node": n} for n in nodes]}


def cluster_status(role, epoch, durable, committed, node="", primary="", entries=()):
    """entries: (node, acked, lag_ms, flags)."""
    return {"role": role, "epoch": epoch, "durable": durable, "committed": committed, "node": node,
            "primary": primary, "count": len(entries),
            "entries": [{"node": n, "acked": a, "lag_ms": lag, "flags": fl} for n, a, lag, fl in entries]}


def repl_hello_payload(node=b"node-b", cluster=b"stockd-eu-1", fingerprint=FINGERPRINT, highest_epoch=0,
                       last_epoch=0, last_seq=0):
    return u64(fingerprint) + u64(highest_epoch) + u64(last_epoch) + u64(last_seq) + str8(node) + str8(cluster)


def role_payload(role, epoch, primary=b""):
    return bytes([role]) + u64(epoch) + str8(primary)


def isr_payload(epoch, nodes, count=None):
    out = u64(epoch) + bytes([len(nodes) if count is None else count])
    for n in nodes:
        out += str8(n)
    return out


def requests():
    v = []
    add = lambda *a: v.append(request_vector(*a))
    add("hello", "HELLO", 1, {"version": 1, "client_name": "checkout-eu-1", "credential": ""})
    add("hello with credential", "HELLO", 2, {"version": 1, "client_name": "stockctl", "credential": "s3cr3t-t0ken"})
    add("hello with binary 255-byte credential", "HELLO", 3,
        {"version": 1, "client_name": "", "credential": {"hex": bytes(range(255)).hex()}})
    add("hello version 2 (decodes; the server answers UNSUPPORTED_VERSION)", "HELLO", 4,
        {"version": 2, "client_name": "future-client", "credential": ""})
    add("ping (spec example)", "PING", 7, {})
    add("ping request id 0", "PING", 0, {})
    add("ping request id max", "PING", 0xFFFFFFFF, {})
    add("reserve minimal", "RESERVE", 100, reserve(1, 0, SKU))
    add("reserve with customer and idempotency key", "RESERVE", 101,
        reserve(2, 90000, SKU, "cust-0042", "idem-7f3a9c"))
    add("reserve customer only", "RESERVE", 102, reserve(1, 30000, SKU, "cust-0042"))
    add("reserve idempotency key only", "RESERVE", 103, reserve(1, 30000, SKU, "", "idem-only"))
    add("reserve multibyte sku", "RESERVE", 104, reserve(3, 90000, SKU_FR, "client-é", "clé-1"))
    add("reserve 4-byte utf-8 sku", "RESERVE", 105, reserve(1, 0, SKU_EMOJI))
    add("reserve max quantity and max ttl", "RESERVE", 106, reserve(MAX_QUANTITY, MAX_TTL_MS, SKU))
    add("reserve 64-byte sku, 64-byte customer and key", "RESERVE", 107,
        reserve(1, 0, SKU_64, "c" * 64, "k" * 64))
    add("reserve 64-byte multibyte sku", "RESERVE", 108, reserve(1, 0, SKU_64_MB))
    add("reserve binary idempotency key", "RESERVE", 109, reserve(1, 0, SKU, {"hex": "00ff"}, BINARY_KEY))
    add("reserve sku with space and punctuation", "RESERVE", 110, reserve(5, 1, "Tee shirt / Größe M"))
    add("reserve_bundle 1 line", "RESERVE_BUNDLE", 200, bundle([(1, SKU)]))
    add("reserve_bundle 3 lines with customer and key", "RESERVE_BUNDLE", 201,
        bundle([(1, SKU), (2, SKU_FR), (3, "SCARF-BLUE")], 90000, "cust-0042", "idem-bundle-1"))
    add("reserve_bundle 16 lines", "RESERVE_BUNDLE", 202,
        bundle([(i + 1, "LINE-%02d" % i) for i in range(16)], MAX_TTL_MS))
    add("reserve_bundle case-distinct skus", "RESERVE_BUNDLE", 203,
        bundle([(1, "jacket-red-m"), (1, SKU)], 60000))
    add("confirm full", "CONFIRM", 300, {"token": T1, "quantity": 0, "order_reference": ""})
    add("confirm full with order reference", "CONFIRM", 301,
        {"token": T2, "quantity": 0, "order_reference": "ORD-2024-000123"})
    add("confirm partial with order reference", "CONFIRM", 302,
        {"token": T1, "quantity": 2, "order_reference": "ORD-2024-000124"})
    add("confirm partial max quantity", "CONFIRM", 303,
        {"token": T3, "quantity": MAX_QUANTITY, "order_reference": "commande-été"})
    add("release", "RELEASE", 400, {"token": T1})
    add("release all-ones token", "RELEASE", 401, {"token": T3})
    add("extend default ttl", "EXTEND", 500, {"token": T1, "ttl_ms": 0})
    add("extend 120s", "EXTEND", 501, {"token": T2, "ttl_ms": 120000})
    add("extend max ttl", "EXTEND", 502, {"token": T2, "ttl_ms": MAX_TTL_MS})
    for flags in range(8):
        expected = 40 if flags & 1 else None
        threshold = 5 if flags & 2 else None
        limit = 2 if flags & 4 else None
        add("stock_set flags %d%d%d" % (flags >> 2 & 1, flags >> 1 & 1, flags & 1), "STOCK_SET", 600 + flags,
            stock_set(50, SKU, expected, threshold, limit))
    add("stock_set compare-and-set on a new sku (expected 0)", "STOCK_SET", 610, stock_set(100, SKU_FR, expected=0))
    add("stock_set max on_hand, limit 0 set explicitly", "STOCK_SET", 611,
        stock_set(MAX_STOCK, SKU, MAX_STOCK, 0, 0))
    add("stock_set on_hand 0", "STOCK_SET", 612, stock_set(0, SKU))
    add("stock_adjust restock", "STOCK_ADJUST", 700, {"delta": 25, "reason": 1, "sku": SKU})
    add("stock_adjust negative delta (shrinkage)", "STOCK_ADJUST", 701, {"delta": -3, "reason": 2, "sku": SKU})
    add("stock_adjust max removal (damage)", "STOCK_ADJUST", 702, {"delta": -MAX_STOCK, "reason": 3, "sku": SKU_FR})
    add("stock_adjust max addition (return)", "STOCK_ADJUST", 703, {"delta": MAX_STOCK, "reason": 4, "sku": SKU})
    add("stock_adjust correction", "STOCK_ADJUST", 704, {"delta": -1, "reason": 5, "sku": SKU})
    add("stock_adjust transfer", "STOCK_ADJUST", 705, {"delta": 7, "reason": 6, "sku": SKU})
    add("stock_adjust unspecified", "STOCK_ADJUST", 706, {"delta": 1, "reason": 0, "sku": SKU})
    add("stock_get", "STOCK_GET", 800, {"sku": SKU})
    add("stock_get multibyte sku", "STOCK_GET", 801, {"sku": SKU_FR})
    add("stock_list first page default limit", "STOCK_LIST", 900, {"cursor": 0, "limit": 0})
    add("stock_list next page limit 100", "STOCK_LIST", 901, {"cursor": 100, "limit": 100})
    add("stock_list max limit", "STOCK_LIST", 902, {"cursor": 0x00012345, "limit": MAX_LIST_PAGE})
    add("stats", "STATS", 1000, {})
    # Backup units (§4 BACKUP_RELEASE, BACKUP_HOLD, STAGE)
    add("backup_release all (quantity 0)", "BACKUP_RELEASE", 1300, {"quantity": 0, "sku": SKU})
    add("backup_release 5 units", "BACKUP_RELEASE", 1301, {"quantity": 5, "sku": SKU})
    add("backup_release max quantity 2^40, multibyte sku", "BACKUP_RELEASE", 1302,
        {"quantity": MAX_STOCK, "sku": SKU_FR})
    add("backup_hold 1 unit", "BACKUP_HOLD", 1400, {"quantity": 1, "sku": SKU})
    add("backup_hold 250 units, 4-byte utf-8 sku", "BACKUP_HOLD", 1401, {"quantity": 250, "sku": SKU_EMOJI})
    add("backup_hold max quantity 2^40, 64-byte sku", "BACKUP_HOLD", 1402, {"quantity": MAX_STOCK, "sku": SKU_64})
    add("stage 1 line", "STAGE", 1500, stage([(100, 10, 5, 2, SKU)]))
    add("stage 3 lines: no backup, all backup, on_hand 0", "STAGE", 1501,
        stage([(50, 0, 0, 0, SKU), (20, 20, 3, 1, SKU_FR), (0, 0, 0, 0, "SCARF-BLUE")]))
    add("stage max values (on_hand = backup = 2^40, threshold and limit 0xFFFFFFFF)", "STAGE", 1502,
        stage([(MAX_STOCK, MAX_STOCK, 0xFFFFFFFF, 0xFFFFFFFF, SKU_64_MB), (MAX_STOCK, 0, 0, 0, SKU_64)]))
    add("stage case-distinct skus", "STAGE", 1503, stage([(5, 1, 0, 0, "jacket-red-m"), (5, 2, 0, 0, SKU)]))
    # 256 lines: line_count 0x0100, so a count read as u8 or big-endian cannot pass
    add("stage 256 lines (line_count needs both bytes)", "STAGE", 1504,
        stage([(1000 + i, i, i % 7, i % 3, "SHOW-%03d" % i) for i in range(256)]))
    # Event feed (§9)
    add("subscribe from oldest, every kind, every sku", "SUBSCRIBE", 1100, subscribe(FEED_FROM_OLDEST, 1000))
    add("subscribe from now (0xFFFFFFFFFFFFFFFF)", "SUBSCRIBE", 1101, subscribe(FEED_FROM_NOW, 64))
    add("subscribe resume at an offset, token outcomes of one sku prefix", "SUBSCRIBE", 1102,
        subscribe(52312, 256, kinds_mask("confirmed", "released", "expired"), "JACKET-"))
    add("subscribe every kind bit set, max credit, multibyte prefix", "SUBSCRIBE", 1103,
        subscribe(1, MAX_FEED_CREDIT, KINDS_MASK, "VESTE-ÉTÉ"))
    add("subscribe credit 0 (nothing sent before a CREDIT), alerts only", "SUBSCRIBE", 1104,
        subscribe(FEED_FROM_OLDEST, 0, kinds_mask("low_stock", "sold_out", "back_in_stock")))
    add("subscribe offset above 2^53, 64-byte sku prefix", "SUBSCRIBE", 1105,
        subscribe((1 << 53) + 1, 1, kinds_mask("stock_set"), SKU_64))
    add("subscribe backup_changed only (bit 11)", "SUBSCRIBE", 1106,
        subscribe(FEED_FROM_OLDEST, 100, kinds_mask("backup_changed")))
    assert kinds_mask("backup_changed") == 0x0800
    add("subscribe term_started only (bit 12, the highest valid bit)", "SUBSCRIBE", 1108,
        subscribe(FEED_FROM_OLDEST, 100, kinds_mask("term_started")))
    assert kinds_mask("term_started") == 0x1000
    add("subscribe stock_set and backup_changed of one sku prefix (a stage's events)", "SUBSCRIBE", 1107,
        subscribe(FEED_FROM_NOW, 500, kinds_mask("stock_set", "backup_changed"), "SHOW-"))
    add("credit 1", "CREDIT", 1200, {"credit": 1})
    add("credit 1000", "CREDIT", 1201, {"credit": 1000})
    add("credit max 1,048,576", "CREDIT", 1202, {"credit": MAX_FEED_CREDIT})
    # Replication and cluster control (§10). REPL_ROUND and REPL_SNAPSHOT are sent by the primary only:
    # their request vectors are in malformed.json (UNKNOWN_OPCODE).
    add("repl_hello empty journal (epochs and seq 0: none seen)", "REPL_HELLO", 1600, repl_hello())
    add("repl_hello after a term", "REPL_HELLO", 1601,
        repl_hello(highest_epoch=3, last_epoch=3, last_seq=52311))
    add("repl_hello highest epoch above the last record's epoch", "REPL_HELLO", 1602,
        repl_hello(NODE_C, highest_epoch=7, last_epoch=5, last_seq=48000))
    add("repl_hello last_epoch 0 with last_seq > 0 (a journal written before epochs)", "REPL_HELLO", 1603,
        repl_hello(highest_epoch=0, last_epoch=0, last_seq=40000))
    add("repl_hello max values, 64-byte node and 64-byte multibyte cluster", "REPL_HELLO", 1604,
        repl_hello("N" * 64, "É" * 32, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF,
                   0xFFFFFFFFFFFFFFFF))
    add("repl_hello 1-byte node and cluster, C1 code point U+0085 allowed", "REPL_HELLO", 1605,
        repl_hello("b", "c\u0085", 0))
    add("repl_ack nothing durable yet", "REPL_ACK", 1700, {"epoch": 1, "durable": 0})
    add("repl_ack", "REPL_ACK", 1701, {"epoch": 3, "durable": 52311})
    add("repl_ack max values", "REPL_ACK", 1702, {"epoch": 0xFFFFFFFFFFFFFFFF, "durable": 0xFFFFFFFFFFFFFFFF})
    add("role primary (empty address)", "ROLE", 1800, {"role": ROLE_PRIMARY, "epoch": 1, "primary": ""})
    add("role standby of a primary", "ROLE", 1801, {"role": ROLE_STANDBY, "epoch": 4, "primary": ADDR_A})
    add("role standby, ipv6 address", "ROLE", 1802,
        {"role": ROLE_STANDBY, "epoch": 5, "primary": "[2001:db8::1]:7070"})
    add("role primary, epoch above 2^53", "ROLE", 1803, {"role": ROLE_PRIMARY, "epoch": (1 << 53) + 1, "primary": ""})
    add("role standby, max epoch, 64-byte address", "ROLE", 1804,
        {"role": ROLE_STANDBY, "epoch": 0xFFFFFFFFFFFFFFFF, "primary": ADDR_64})
    add("fence until_ns 0", "FENCE", 1900, {"until_ns": 0})
    add("fence", "FENCE", 1901, {"until_ns": 123_456_789_012_345})
    add("fence max until_ns", "FENCE", 1902, {"until_ns": 0xFFFFFFFFFFFFFFFF})
    add("isr_set empty wait set", "ISR_SET", 2000, isr_set(1, []))
    add("isr_set 2 nodes", "ISR_SET", 2001, isr_set(3, [NODE_B, NODE_C]))
    add("isr_set 16 nodes (the maximum)", "ISR_SET", 2002, isr_set(9, ["node-%02d" % i for i in range(16)]))
    add("isr_set case-distinct nodes, 64-byte multibyte node, max epoch", "ISR_SET", 2003,
        isr_set(0xFFFFFFFFFFFFFFFF, ["Node-B", NODE_B, "é" * 32]))
    add("cluster_status", "CLUSTER_STATUS", 2100, {})
    assert v[4]["hex"] == "080000000200000007000000"  # the example in §2
    # EVENT is server to client only: its one request vector is in malformed.json (UNKNOWN_OPCODE).
    assert {x["opcode"] for x in v} == REQUEST_OPCODES, "every client opcode has a vector"
    return v


def responses():
    v = []
    add = lambda *a: v.append(response_vector(*a))
    # OK answers, every opcode
    add("hello ok admin", "HELLO", 1, "OK",
        {"version": 1, "role": 2, "max_frame": MAX_FRAME, "max_ttl_ms": MAX_TTL_MS, "default_ttl_ms": 90000,
         "max_bundle_lines": 16, "max_sku_length": 64, "max_inflight": 1024, "server_name": "stockd 0.1.0"})
    add("hello ok checkout, tighter limits", "HELLO", 2, "OK",
        {"version": 1, "role": 1, "max_frame": 16 * 1024 * 1024, "max_ttl_ms": 600000, "default_ttl_ms": 60000,
         "max_bundle_lines": 8, "max_sku_length": 64, "max_inflight": 256, "server_name": "stockd-été"})
    add("hello ok role none", "HELLO", 3, "OK",
        {"version": 1, "role": 0, "max_frame": MAX_FRAME, "max_ttl_ms": MAX_TTL_MS, "default_ttl_ms": 90000,
         "max_bundle_lines": 16, "max_sku_length": 64, "max_inflight": 1, "server_name": ""})
    add("ping ok (spec example)", "PING", 7, "OK", {})
    # viewer is wire value 3 (added after checkout 1 and admin 2), ranked between none and checkout (§3).
    add("hello ok viewer", "HELLO", 4, "OK",
        {"version": 1, "role": 3, "max_frame": MAX_FRAME, "max_ttl_ms": MAX_TTL_MS, "default_ttl_ms": 90000,
         "max_bundle_lines": 16, "max_sku_length": 64, "max_inflight": 1024, "server_name": "stockd 0.1.0"})
    add("reserve ok", "RESERVE", 100, "OK", {"token": T1, "expires_at_ms": 1732665600000 + 90000, "available": 41})
    add("reserve ok max values", "RESERVE", 0xFFFFFFFF, "OK",
        {"token": T3, "expires_at_ms": 0xFFFFFFFFFFFFFFFF, "available": 0xFFFFFFFFFFFFFFFF})
    add("reserve_bundle ok", "RESERVE_BUNDLE", 201, "OK", {"token": T2, "expires_at_ms": 1732665690000})
    add("confirm ok full", "CONFIRM", 300, "OK", {"confirmed": 3, "returned": 0})
    add("confirm ok partial", "CONFIRM", 302, "OK", {"confirmed": 2, "returned": 1})
    add("release ok", "RELEASE", 400, "OK", {"released": 3})
    add("extend ok", "EXTEND", 501, "OK", {"expires_at_ms": 1732665720000})
    add("stock_set ok", "STOCK_SET", 600, "OK", {"stock_info": stock_info(50, 47, 2, 1, 5, 2, 3)})
    add("stock_adjust ok", "STOCK_ADJUST", 701, "OK", {"stock_info": stock_info(47, 44, 2, 1)})
    add("stock_get ok", "STOCK_GET", 800, "OK", {"stock_info": stock_info(MAX_STOCK, MAX_STOCK - 10, 7, 3, 100, 4, 0xFFFFFFFFFFFFFFFF)})
    add("stock_list ok page", "STOCK_LIST", 900, "OK",
        {"next_cursor": 2, "count": 2,
         "entries": [{"sku": SKU, "stock_info": stock_info(50, 47, 2, 1, 5, 2)},
                     {"sku": SKU_FR, "stock_info": stock_info(10, 10, 0, 0)}]})
    add("stock_list ok last page", "STOCK_LIST", 901, "OK",
        {"next_cursor": LIST_END, "count": 1,
         "entries": [{"sku": SKU_EMOJI, "stock_info": stock_info(3, 0, 1, 2)}]})
    add("stock_list ok empty", "STOCK_LIST", 902, "OK", {"next_cursor": LIST_END, "count": 0, "entries": []})
    add("stock_get ok with backup units", "STOCK_GET", 801, "OK",
        {"stock_info": stock_info(120, 60, 8, 2, 10, 2, 17, backup=50)})
    add("stock_list ok page with backup units", "STOCK_LIST", 903, "OK",
        {"next_cursor": 3, "count": 1,
         "entries": [{"sku": "SHOW-000", "stock_info": stock_info(1000, 0, 0, 0, backup=1000)}]})
    # Backup units (§4): BACKUP_RELEASE and BACKUP_HOLD answer StockInfo; STAGE `lines, created`
    add("backup_release ok all (backup now 0)", "BACKUP_RELEASE", 1300, "OK",
        {"stock_info": stock_info(120, 110, 8, 2, 10, 2, 17, backup=0)})
    add("backup_release ok 5 units", "BACKUP_RELEASE", 1301, "OK",
        {"stock_info": stock_info(120, 65, 8, 2, 10, 2, 17, backup=45)})
    add("backup_release ok max values", "BACKUP_RELEASE", 1302, "OK",
        {"stock_info": stock_info(MAX_STOCK, MAX_STOCK, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF,
                                  backup=0)})
    add("backup_hold ok", "BACKUP_HOLD", 1400, "OK",
        {"stock_info": stock_info(120, 59, 8, 2, 10, 2, 17, backup=51)})
    add("backup_hold ok every unit held back", "BACKUP_HOLD", 1402, "OK",
        {"stock_info": stock_info(MAX_STOCK, 0, 0, 0, backup=MAX_STOCK)})
    add("stage ok 1 line created", "STAGE", 1500, "OK", {"lines": 1, "created": 1})
    add("stage ok 3 lines, 2 created", "STAGE", 1501, "OK", {"lines": 3, "created": 2})
    add("stage ok 256 lines, none created (staged again)", "STAGE", 1504, "OK", {"lines": 256, "created": 0})
    add("stage ok 4096 lines created (max_frame above the default)", "STAGE", 1505, "OK",
        {"lines": MAX_STAGE_LINES, "created": MAX_STAGE_LINES})
    add("stats ok", "STATS", 1000, "OK",
        {"count": 3, "entries": [{"name": "connections.open", "value": 12},
                                 {"name": "requests.RESERVE", "value": 1234567890123},
                                 {"name": "status.OUT_OF_STOCK", "value": 0}]})
    add("stats ok empty", "STATS", 1001, "OK", {"count": 0, "entries": []})
    # Event feed (§9): SUBSCRIBE's answer, then EVENT frames with SUBSCRIBE's request id
    add("subscribe ok from oldest", "SUBSCRIBE", 1100, "OK", {"start": 1, "end": 52311})
    add("subscribe ok from now", "SUBSCRIBE", 1101, "OK", {"start": 52312, "end": 52311})
    add("subscribe ok resume", "SUBSCRIBE", 1102, "OK", {"start": 52312, "end": 60000})
    add("subscribe ok on an empty feed", "SUBSCRIBE", 1104, "OK", {"start": 1, "end": 0})
    add("subscribe ok offsets above 2^53", "SUBSCRIBE", 1105, "OK",
        {"start": (1 << 53) + 1, "end": (1 << 53) + 1})
    t = NOW_MS
    add("event stock_set (aux: threshold << 32 | limit)", "EVENT", 1100, "OK",
        event(1, t, "stock_set", quantity=50, aux=5 << 32 | 2, sku=SKU))
    add("event stock_adjusted negative delta (shrinkage)", "EVENT", 1100, "OK",
        event(2, t + 1, "stock_adjusted", quantity=-3, aux=2, sku=SKU))
    add("event stock_adjusted max removal (damage)", "EVENT", 1100, "OK",
        event(3, t + 2, "stock_adjusted", quantity=-MAX_STOCK, aux=3, sku=SKU_FR))
    add("event stock_adjusted restock", "EVENT", 1100, "OK",
        event(4, t + 3, "stock_adjusted", quantity=25, aux=1, sku=SKU))
    add("event reserved with customer", "EVENT", 1100, "OK",
        event(5, t + 10, "reserved", line=0, lines=1, quantity=2, aux=t + 10 + 90000, token=T1, sku=SKU,
              customer="cust-0042"))
    add("event reserved bundle line 1 of 3, binary customer", "EVENT", 1100, "OK",
        event(6, t + 11, "reserved", line=1, lines=3, quantity=2, aux=t + 11 + 90000, token=T2, sku=SKU_FR,
              customer=BINARY_KEY))
    add("event confirmed with token, sku, order reference and customer", "EVENT", 1100, "OK",
        event(7, t + 20, "confirmed", line=0, lines=1, quantity=2, aux=1, token=T1, sku=SKU,
              order_reference="ORD-2024-000124", customer="cust-0042"))
    add("event confirmed bundle line 2 of 3", "EVENT", 1100, "OK",
        event(8, t + 21, "confirmed", line=2, lines=3, quantity=3, aux=0, token=T2, sku="SCARF-BLUE",
              order_reference="commande-été", customer=BINARY_KEY))
    add("event released", "EVENT", 1100, "OK",
        event(9, t + 30, "released", line=0, lines=1, quantity=3, token=T1, sku=SKU, customer="cust-0042"))
    add("event expired, no customer", "EVENT", 1100, "OK",
        event(10, t + 90010, "expired", line=0, lines=3, quantity=1, token=T2, sku=SKU_EMOJI))
    add("event extended (token only, empty sku)", "EVENT", 1100, "OK",
        event(11, t + 40, "extended", aux=t + 40 + 120000, token=T2))
    add("event low_stock", "EVENT", 1100, "OK", event(12, t + 50, "low_stock", quantity=4, sku=SKU))
    add("event sold_out", "EVENT", 1100, "OK", event(13, t + 51, "sold_out", sku=SKU_EMOJI))
    add("event back_in_stock", "EVENT", 1100, "OK", event(14, t + 52, "back_in_stock", quantity=25, sku=SKU))
    add("event backup_changed held back (positive change, aux backup after)", "EVENT", 1100, "OK",
        event(16, t + 80, "backup_changed", quantity=50, aux=50, sku=SKU))
    add("event backup_changed released to sale (negative change)", "EVENT", 1100, "OK",
        event(17, t + 81, "backup_changed", quantity=-45, aux=5, sku=SKU))
    add("event backup_changed all released (aux 0)", "EVENT", 1106, "OK",
        event(18, t + 82, "backup_changed", quantity=-MAX_STOCK, aux=0, sku=SKU_FR))
    add("event term_started (epoch in quantity, node id in order_reference, no sku)", "EVENT", 1100, "OK",
        event(19, t + 90, "term_started", quantity=4711, order_reference="stockd-b"))
    add("event term_started largest epoch (2^63 - 1), 64-byte node id", "EVENT", 1108, "OK",
        event(20, t + 91, "term_started", quantity=(1 << 63) - 1, order_reference="n" * 64))
    add("event progress marker (kind 0)", "EVENT", 1100, "OK", event(52311, t + 60, "progress"))
    add("event progress marker on a feed from now", "EVENT", 1101, "OK", event(52311, t + 5060, "progress"))
    add("event max values and 64-byte strings", "EVENT", 0xFFFFFFFF, "OK",
        event(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, "confirmed", line=255, lines=255, quantity=(1 << 63) - 1,
              aux=0xFFFFFFFFFFFFFFFF, token=T3, sku=SKU_64_MB, order_reference="o" * 64, customer="c" * 64))
    add("event quantity -2^63 (two's complement)", "EVENT", 1100, "OK",
        event(15, t + 70, "stock_adjusted", quantity=-(1 << 63), aux=5, sku=SKU))
    # Replication and cluster control (§10): REPL_ROUND and REPL_SNAPSHOT frames carry the REPL_HELLO's
    # request id; REPL_ACK is never answered (no OK vector).
    add("repl_hello ok", "REPL_HELLO", 1601, "OK", {"epoch": 3, "start": 52312, "committed": 52311})
    add("repl_hello ok empty journal", "REPL_HELLO", 1600, "OK", {"epoch": 1, "start": 1, "committed": 0})
    add("repl_hello ok max values", "REPL_HELLO", 1604, "OK",
        {"epoch": 0xFFFFFFFFFFFFFFFF, "start": 0xFFFFFFFFFFFFFFFF, "committed": 0xFFFFFFFFFFFFFFFF})
    add("repl_round ok no records (count 0: only moves end)", "REPL_ROUND", 1601, "OK",
        {"epoch": 3, "end": 52311, "count": 0, "records": {"hex": ""}})
    add("repl_round ok 2 records (bytes carried, not parsed)", "REPL_ROUND", 1601, "OK",
        {"epoch": 3, "end": 52313, "count": 2, "records": ROUND_RECORDS})
    add("repl_round ok records that happen to be utf-8 are still hex", "REPL_ROUND", 1601, "OK",
        {"epoch": 3, "end": 52314, "count": 1, "records": {"hex": b"JACKET-RED-M".hex()}})
    add("repl_round ok max values (count carried, not checked against the records)", "REPL_ROUND", 0xFFFFFFFF,
        "OK", {"epoch": 0xFFFFFFFFFFFFFFFF, "end": 0xFFFFFFFFFFFFFFFF, "count": 0xFFFF, "records": {"hex": "00ff"}})
    add("repl_snapshot ok first chunk", "REPL_SNAPSHOT", 1603, "OK",
        {"epoch": 3, "snapshot_seq": 50000, "offset": 0, "total": 10, "chunk": {"hex": "53544b5300010203"}})
    add("repl_snapshot ok last chunk", "REPL_SNAPSHOT", 1603, "OK",
        {"epoch": 3, "snapshot_seq": 50000, "offset": 8, "total": 10, "chunk": {"hex": "0405"}})
    add("repl_snapshot ok max values, empty chunk", "REPL_SNAPSHOT", 0xFFFFFFFF, "OK",
        {"epoch": 0xFFFFFFFFFFFFFFFF, "snapshot_seq": 0xFFFFFFFFFFFFFFFF, "offset": 0xFFFFFFFFFFFFFFFF,
         "total": 0xFFFFFFFFFFFFFFFF, "chunk": {"hex": ""}})
    add("role ok primary", "ROLE", 1800, "OK", {"role": ROLE_PRIMARY, "epoch": 4, "last_seq": 52312})
    add("role ok standby", "ROLE", 1801, "OK", {"role": ROLE_STANDBY, "epoch": 4, "last_seq": 52311})
    add("fence ok", "FENCE", 1901, "OK", {"committed": 52311})
    add("isr_set ok", "ISR_SET", 2001, "OK", {"committed": 52320})
    add("cluster_status ok standalone", "CLUSTER_STATUS", 2100, "OK", cluster_status(0, 0, 52311, 52311))
    add("cluster_status ok primary with 2 standbys (one in the wait set)", "CLUSTER_STATUS", 2101, "OK",
        cluster_status(ROLE_PRIMARY, 3, 52320, 52318, NODE_A, "",
                       [(NODE_B, 52318, 2, CLUSTER_FLAG_IN_WAIT_SET), (NODE_C, 52100, 1500, 0)]))
    add("cluster_status ok standby", "CLUSTER_STATUS", 2102, "OK",
        cluster_status(ROLE_STANDBY, 3, 52318, 52311, NODE_B, ADDR_A))
    add("cluster_status ok primary with 16 standbys, max values", "CLUSTER_STATUS", 2103, "OK",
        cluster_status(ROLE_PRIMARY, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, "N" * 64, "",
                       [("node-%02d" % i, 0xFFFFFFFFFFFFFFFF - i, 0xFFFFFFFF - i, i % 2) for i in range(16)]))
    # Failures, every status
    add("out_of_stock bundle line 2 available 3", "RESERVE_BUNDLE", 201, "OUT_OF_STOCK", {"line": 2, "available": 3})
    add("out_of_stock reserve", "RESERVE", 100, "OUT_OF_STOCK", {"line": 0, "available": 0})
    add("unknown_sku stock_get", "STOCK_GET", 800, "UNKNOWN_SKU", {"line": 0})
    add("unknown_sku bundle line 1", "RESERVE_BUNDLE", 201, "UNKNOWN_SKU", {"line": 1})
    add("token_unknown", "CONFIRM", 300, "TOKEN_UNKNOWN", {})
    add("token_expired", "CONFIRM", 301, "TOKEN_EXPIRED", {})
    add("token_confirmed", "RELEASE", 400, "TOKEN_CONFIRMED", {})
    add("token_released", "EXTEND", 500, "TOKEN_RELEASED", {})
    add("stock_changed", "STOCK_SET", 601, "STOCK_CHANGED", {"current_on_hand": 38})
    add("customer_limit", "RESERVE", 101, "CUSTOMER_LIMIT", {"line": 0, "remaining": 1})
    add("customer_limit bundle line 15", "RESERVE_BUNDLE", 202, "CUSTOMER_LIMIT", {"line": 15, "remaining": 0})
    add("quantity_invalid", "CONFIRM", 302, "QUANTITY_INVALID", {})
    add("ttl_too_long", "RESERVE", 106, "TTL_TOO_LONG", {"max_ttl_ms": 600000})
    add("insufficient_available", "STOCK_ADJUST", 701, "INSUFFICIENT_AVAILABLE", {"available": 2})
    add("idempotency_conflict", "RESERVE", 101, "IDEMPOTENCY_CONFLICT", {})
    add("invalid_sku", "STOCK_GET", 801, "INVALID_SKU", {})
    add("invalid_argument", "STOCK_LIST", 902, "INVALID_ARGUMENT", {})
    add("invalid_argument subscribe from beyond end + 1", "SUBSCRIBE", 1105, "INVALID_ARGUMENT", {})
    add("invalid_argument credit on a connection that is not a feed", "CREDIT", 1200, "INVALID_ARGUMENT", {})
    add("offset_compacted subscribe", "SUBSCRIBE", 1100, "OFFSET_COMPACTED", {"oldest": 40001})
    add("offset_compacted ends a feed (event frame)", "EVENT", 1102, "OFFSET_COMPACTED",
        {"oldest": 0xFFFFFFFFFFFFFFFF})
    add("feed_unavailable", "SUBSCRIBE", 1100, "FEED_UNAVAILABLE", {})
    add("insufficient_backup", "BACKUP_RELEASE", 1301, "INSUFFICIENT_BACKUP", {"backup": 3})
    add("insufficient_backup none held back", "BACKUP_RELEASE", 1302, "INSUFFICIENT_BACKUP", {"backup": 0})
    add("insufficient_available backup_hold", "BACKUP_HOLD", 1401, "INSUFFICIENT_AVAILABLE", {"available": 249})
    add("unknown_sku backup_release", "BACKUP_RELEASE", 1300, "UNKNOWN_SKU", {"line": 0})
    add("stage_refused one line insufficient_available", "STAGE", 1500, "STAGE_REFUSED",
        stage_refused((0, "INSUFFICIENT_AVAILABLE", 4)))
    add("stage_refused every refused line (lines 0, 2, 255)", "STAGE", 1504, "STAGE_REFUSED",
        stage_refused((0, "INSUFFICIENT_AVAILABLE", 0), (2, "INSUFFICIENT_AVAILABLE", 7),
                      (255, "INSUFFICIENT_AVAILABLE", 3)))
    add("stage_refused at_capacity (first new sku, skus the catalog can still take)", "STAGE", 1501,
        "STAGE_REFUSED", stage_refused((1, "AT_CAPACITY", 0)))
    add("stage_refused max line index 4095, available 2^40", "STAGE", 1505, "STAGE_REFUSED",
        stage_refused((MAX_STAGE_LINES - 1, "INSUFFICIENT_AVAILABLE", MAX_STOCK)))
    add("malformed", "RESERVE", 100, "MALFORMED", {})
    add("frame_too_large", "RESERVE", 0x01020304, "FRAME_TOO_LARGE", {"max_frame": MAX_FRAME})
    add("unknown_opcode echoes 0x7E", "0x7E", 77, "UNKNOWN_OPCODE", {})
    add("unknown_opcode echoes 0xFF", "0xFF", 78, "UNKNOWN_OPCODE", {})
    add("unknown_opcode echoes EVENT sent as a request", "EVENT", 79, "UNKNOWN_OPCODE", {})
    add("unsupported_version", "HELLO", 4, "UNSUPPORTED_VERSION", {"min": 1, "max": 1})
    add("unauthenticated", "RESERVE", 100, "UNAUTHENTICATED", {})
    add("auth_failed", "HELLO", 2, "AUTH_FAILED", {})
    add("forbidden", "STOCK_SET", 600, "FORBIDDEN", {})
    add("at_capacity", "RESERVE", 100, "AT_CAPACITY", {})
    add("busy", "PING", 7, "BUSY", {})
    add("rate_limited", "RESERVE", 100, "RATE_LIMITED", {})
    add("hello_out_of_order", "HELLO", 5, "HELLO_OUT_OF_ORDER", {})
    add("shutting_down", "RESERVE", 100, "SHUTTING_DOWN", {})
    add("shutting_down ends a feed (event frame)", "EVENT", 1100, "SHUTTING_DOWN", {})
    add("malformed ends a feed (client sent other than CREDIT)", "EVENT", 1100, "MALFORMED", {})
    add("internal", "CONFIRM", 300, "INTERNAL", {})
    add("internal ends a feed (journal unreadable)", "EVENT", 1101, "INTERNAL", {})
    add("storage_failed", "RESERVE", 101, "STORAGE_FAILED", {})
    # §5 statuses 19-25 (§10)
    add("not_primary reserve on a standby", "RESERVE", 100, "NOT_PRIMARY", {"epoch": 3, "primary": ADDR_A})
    add("not_primary reserve, primary unknown (empty address)", "RESERVE", 101, "NOT_PRIMARY",
        {"epoch": 2, "primary": ""})
    add("not_primary repl_hello (names the primary it knows)", "REPL_HELLO", 1601, "NOT_PRIMARY",
        {"epoch": 4, "primary": "[2001:db8::1]:7070"})
    add("not_primary isr_set on a standby", "ISR_SET", 2001, "NOT_PRIMARY", {"epoch": 3, "primary": ADDR_64})
    add("not_enough_replicas confirm", "CONFIRM", 300, "NOT_ENOUGH_REPLICAS", {"in_sync": 0, "required": 1})
    add("not_enough_replicas reserve_bundle, max values", "RESERVE_BUNDLE", 201, "NOT_ENOUGH_REPLICAS",
        {"in_sync": 254, "required": 255})
    add("uncommitted reserve", "RESERVE", 101, "UNCOMMITTED", {})
    add("stale_epoch repl_hello (the primary's own epoch)", "REPL_HELLO", 1602, "STALE_EPOCH", {"epoch": 6})
    add("stale_epoch role (the node's epoch)", "ROLE", 1801, "STALE_EPOCH", {"epoch": 5})
    add("stale_epoch isr_set", "ISR_SET", 2001, "STALE_EPOCH", {"epoch": 0xFFFFFFFFFFFFFFFF})
    add("truncate_to repl_hello", "REPL_HELLO", 1601, "TRUNCATE_TO", {"seq": 52300})
    add("diverged repl_hello", "REPL_HELLO", 1602, "DIVERGED", {})
    add("config_mismatch repl_hello fingerprint", "REPL_HELLO", 1601, "CONFIG_MISMATCH", {"field": "fingerprint"})
    add("config_mismatch repl_hello cluster", "REPL_HELLO", 1604, "CONFIG_MISMATCH", {"field": "cluster"})
    add("config_mismatch repl_hello node", "REPL_HELLO", 1605, "CONFIG_MISMATCH", {"field": "node"})
    add("config_mismatch role on a node started without a cluster name", "ROLE", 1800, "CONFIG_MISMATCH",
        {"field": "cluster"})
    add("config_mismatch fence", "FENCE", 1901, "CONFIG_MISMATCH", {"field": "cluster"})
    add("invalid_argument repl_ack on a connection that is not a replication connection", "REPL_ACK", 1701,
        "INVALID_ARGUMENT", {})
    add("unknown_opcode echoes REPL_ROUND sent as a request", "REPL_ROUND", 80, "UNKNOWN_OPCODE", {})
    add("unknown_opcode echoes REPL_SNAPSHOT sent as a request", "REPL_SNAPSHOT", 81, "UNKNOWN_OPCODE", {})
    add("forbidden role from a checkout session", "ROLE", 1800, "FORBIDDEN", {})
    add("unauthenticated cluster_status", "CLUSTER_STATUS", 2100, "UNAUTHENTICATED", {})
    assert v[3]["hex"] == "080000000201000007000000"  # the example in §2
    assert {STATUSES[x["status"]] for x in v} == set(STATUS_NAMES), "every status has a vector"
    # CREDIT is never answered OK (§9); every other opcode, EVENT included, has an OK vector.
    assert {x["opcode"] for x in v if x["status"] == "OK"} == ANSWERED_OPCODES, "every answered opcode has an OK vector"
    for x in v:
        if x["opcode"] == "CLUSTER_STATUS" and x["status"] == "OK":  # §10: role 0..2, 0-16 entries, flags bit 0
            f = x["fields"]
            assert f["role"] in (0, ROLE_PRIMARY, ROLE_STANDBY) and f["count"] <= MAX_ISR_NODES, x["name"]
            assert all(e["flags"] & ~CLUSTER_FLAG_IN_WAIT_SET == 0 for e in f["entries"]), x["name"]
            assert f["role"] == ROLE_PRIMARY or f["count"] == 0, x["name"]  # entries: standbys of a primary
            if f["role"] == 0:  # standalone: epoch 0, committed = durable, empty names
                assert f["epoch"] == 0 and f["committed"] == f["durable"] and f["node"] == f["primary"] == ""
        if x["status"] == "STAGE_REFUSED":  # §5: 1 to 4,096 entries, INSUFFICIENT_AVAILABLE or AT_CAPACITY
            assert 1 <= x["fields"]["count"] <= MAX_STAGE_LINES, x["name"]
            assert all(e["status"] in (STATUSES["INSUFFICIENT_AVAILABLE"], STATUSES["AT_CAPACITY"])
                       and e["line"] < MAX_STAGE_LINES for e in x["fields"]["entries"]), x["name"]
    event_kinds = {x["fields"]["kind"] for x in v if x["opcode"] == "EVENT" and x["status"] == "OK"}
    assert event_kinds == set(EVENT_KINDS.values()), "every event kind has a vector"
    return v


def malformed():
    v = []
    add = lambda name, data, error: v.append(malformed_vector(name, data, error))
    ping = raw_request("PING", 7, b"")
    reserve_ok = reserve_payload(2, 90000, SKU, b"cust-0042", b"idem-1")

    # Framing (§2, §6)
    add("empty input", b"", "need_more")
    add("truncated length prefix (3 bytes)", ping[:3], "need_more")
    add("truncated header (7 bytes)", ping[:7], "need_more")
    add("truncated header (11 bytes)", ping[:11], "need_more")
    add("truncated frame (header of a reserve, no payload)", raw_request("RESERVE", 9, reserve_ok)[:12], "need_more")
    add("truncated frame (last byte missing)", raw_request("RESERVE", 9, reserve_ok)[:-1], "need_more")
    add("length prefix 7", header(7, 0x02, 0, 0, 0, 5), "length_too_small")
    add("length prefix 0", header(0, 0x02, 0, 0, 0, 5), "length_too_small")
    add("length prefix 65533: frame of 65537 bytes beyond max_frame 65536",
        header(65533, 0x10, 0, 0, 0, 0x01020304), "too_large")
    add("length prefix 0xFFFFFFFF", header(0xFFFFFFFF, 0x02, 0, 0, 0, 99), "too_large")
    add("length prefix 65532 exactly max_frame, payload not yet in", header(65532, 0x10, 0, 0, 0, 11), "need_more")
    # Header bits, then opcode (§2, §4 check order)
    add("unknown opcode 0x7E", raw_request("0x7E", 20, b""), "UNKNOWN_OPCODE")
    add("unknown opcode 0x03 with payload", raw_request("0x03", 21, b"\x01\x02\x03"), "UNKNOWN_OPCODE")
    add("unknown opcode 0x43 (unassigned in the event-feed range)", raw_request("0x43", 22, b""), "UNKNOWN_OPCODE")
    add("unknown opcode 0x4F", raw_request("0x4F", 25, u32(1)), "UNKNOWN_OPCODE")
    add("unknown opcode 0x60 (reserved for later operations)", raw_request("0x60", 26, b""), "UNKNOWN_OPCODE")
    add("unknown opcode 0x54 (unassigned in the replication range)", raw_request("0x54", 240, b""), "UNKNOWN_OPCODE")
    add("unknown opcode 0x57 with a payload", raw_request("0x57", 241, u64(1) + u64(2)), "UNKNOWN_OPCODE")
    add("unknown opcode 0x5C (after CLUSTER_STATUS)", raw_request("0x5C", 242, b""), "UNKNOWN_OPCODE")
    add("unknown opcode 0x5F", raw_request("0x5F", 243, b""), "UNKNOWN_OPCODE")
    # REPL_ROUND and REPL_SNAPSHOT are sent by the primary only (§10): as requests, unknown opcodes.
    add("repl_round opcode 0x51 sent as a request", raw_request("REPL_ROUND", 244, b""), "UNKNOWN_OPCODE")
    add("repl_round opcode 0x51 sent as a request with a round payload", raw_request(
        "REPL_ROUND", 245, encode_layout(RESPONSE_OK_LAYOUTS["REPL_ROUND"],
                                         {"epoch": 3, "end": 52313, "count": 2, "records": ROUND_RECORDS})),
        "UNKNOWN_OPCODE")
    add("repl_snapshot opcode 0x53 sent as a request", raw_request("REPL_SNAPSHOT", 246, b""), "UNKNOWN_OPCODE")
    add("repl_snapshot opcode 0x53 sent as a request with a chunk", raw_request(
        "REPL_SNAPSHOT", 247, u64(3) + u64(50000) + u64(0) + u64(10) + bytes.fromhex("53544b5300010203")),
        "UNKNOWN_OPCODE")
    # EVENT is sent by the server only (§4): as a request it is an unknown opcode, whatever its payload.
    add("event opcode 0x41 sent as a request", raw_request("EVENT", 27, b""), "UNKNOWN_OPCODE")
    add("event opcode 0x41 sent as a request with an event payload", raw_request(
        "EVENT", 28, encode_layout(EVENT, event(7, NOW_MS, "confirmed", line=0, lines=1, quantity=2, aux=1, token=T1, sku=SKU,
                                   order_reference="ORD-1", customer="c"))),
        "UNKNOWN_OPCODE")
    add("unknown opcode 0x80", raw_request("0x80", 23, b""), "UNKNOWN_OPCODE")
    add("unknown opcode 0x00", raw_request("0x00", 24, b""), "UNKNOWN_OPCODE")
    add("response flag set in a request", raw_request("PING", 30, b"", flags=0x01), "MALFORMED")
    add("unknown flag bit 0x80 in a request", raw_request("PING", 31, b"", flags=0x80), "MALFORMED")
    add("status byte set in a request", raw_request("RESERVE", 32, reserve_ok, status=1), "MALFORMED")
    add("reserved byte set in a request", raw_request("STATS", 33, b"", reserved=0xFF), "MALFORMED")
    add("header bits checked before the opcode: unknown opcode with flag set",
        raw_request("0x7E", 34, b"", flags=0x01), "MALFORMED")
    add("header bits checked before the opcode: an event frame sent back (response flag)",
        raw_request("EVENT", 35, encode_layout(EVENT, event(52311, NOW_MS, "progress")), flags=0x01), "MALFORMED")
    add("header bits checked before the opcode: a repl_round frame sent back (response flag)", raw_request(
        "REPL_ROUND", 248, encode_layout(RESPONSE_OK_LAYOUTS["REPL_ROUND"],
                                         {"epoch": 3, "end": 52311, "count": 0, "records": {"hex": ""}}),
        flags=0x01), "MALFORMED")
    add("header bits checked before the opcode: repl_snapshot with the status byte set",
        raw_request("REPL_SNAPSHOT", 249, b"", status=STATUSES["STALE_EPOCH"]), "MALFORMED")
    # Structure (§4: every payload exactly as long as its layout)
    add("ping with a trailing byte", raw_request("PING", 40, b"\x00"), "MALFORMED")
    add("stats with a trailing byte", raw_request("STATS", 41, b"\x00"), "MALFORMED")
    add("reserve truncated payload (key missing)", raw_request("RESERVE", 42, reserve_ok[:-7]), "MALFORMED")
    add("reserve truncated payload (only quantity)", raw_request("RESERVE", 43, u32(1)), "MALFORMED")
    add("reserve trailing byte", raw_request("RESERVE", 44, reserve_ok + b"\x00"), "MALFORMED")
    add("reserve sku length beyond payload", raw_request("RESERVE", 45, u32(1) + u32(0) + b"\x40ABC"), "MALFORMED")
    add("release token of 15 bytes", raw_request("RELEASE", 46, bytes.fromhex(T1)[:15]), "MALFORMED")
    add("release token with a trailing byte", raw_request("RELEASE", 47, bytes.fromhex(T1) + b"\x00"), "MALFORMED")
    add("extend without ttl", raw_request("EXTEND", 48, bytes.fromhex(T1)), "MALFORMED")
    add("hello without credential", raw_request("HELLO", 49, u16(1) + str8(b"x")), "MALFORMED")
    add("stock_list limit truncated", raw_request("STOCK_LIST", 50, u32(0) + b"\x05"), "MALFORMED")
    add("stock_get empty payload", raw_request("STOCK_GET", 51, b""), "MALFORMED")
    add("bundle line_count 2 with 1 line", raw_request("RESERVE_BUNDLE", 52, bundle_payload([(1, b"A")], count=2)),
        "MALFORMED")
    add("bundle 17 lines announced, 16 present", raw_request(
        "RESERVE_BUNDLE", 53, bundle_payload([(1, b"L%02d" % i) for i in range(16)], count=17)), "MALFORMED")
    add("stock_set truncated (no sku)", raw_request("STOCK_SET", 54, stock_set_payload(0, 5)[:-13]), "MALFORMED")
    add("stock_adjust trailing byte", raw_request("STOCK_ADJUST", 55, stock_adjust_payload(5) + b"\x00"),
        "MALFORMED")
    add("structure before values: truncated payload and zero quantity",
        raw_request("RESERVE", 56, reserve_payload(0, 0, SKU)[:-1]), "MALFORMED")
    add("structure before values: trailing byte and bad sku",
        raw_request("STOCK_GET", 57, str8(b"") + b"\x00"), "MALFORMED")
    add("subscribe empty payload", raw_request("SUBSCRIBE", 150, b""), "MALFORMED")
    add("subscribe truncated (sku_prefix count missing)", raw_request("SUBSCRIBE", 151, subscribe_payload()[:-1]),
        "MALFORMED")
    add("subscribe truncated (kinds cut)", raw_request("SUBSCRIBE", 152, subscribe_payload()[:13]), "MALFORMED")
    add("subscribe sku_prefix length beyond payload",
        raw_request("SUBSCRIBE", 153, subscribe_payload()[:-1] + b"\x07JACKET"), "MALFORMED")
    add("subscribe trailing byte", raw_request("SUBSCRIBE", 154, subscribe_payload(sku_prefix=b"J") + b"\x00"),
        "MALFORMED")
    add("credit empty payload", raw_request("CREDIT", 155, b""), "MALFORMED")
    add("credit truncated (3 bytes)", raw_request("CREDIT", 156, u32(100)[:3]), "MALFORMED")
    add("credit trailing byte", raw_request("CREDIT", 157, u32(100) + b"\x00"), "MALFORMED")
    add("structure before values: truncated subscribe with kinds bit 0 set",
        raw_request("SUBSCRIBE", 158, subscribe_payload(kinds=0x0001)[:-1]), "MALFORMED")
    add("structure before values: credit 0 with a trailing byte", raw_request("CREDIT", 159, u32(0) + b"\x00"),
        "MALFORMED")
    # SKU (§4 field rules)
    add("sku empty", raw_request("RESERVE", 60, reserve_payload(1, 0, b"")), "INVALID_SKU")
    add("sku 65 bytes", raw_request("RESERVE", 61, reserve_payload(1, 0, b"S" * 65)), "INVALID_SKU")
    add("sku 255 bytes", raw_request("STOCK_GET", 62, str8(b"S" * 255)), "INVALID_SKU")
    add("sku 66 bytes of 2-byte utf-8", raw_request("STOCK_GET", 63, str8("É" * 33)), "INVALID_SKU")
    add("sku with tab", raw_request("RESERVE", 64, reserve_payload(1, 0, b"JACKET\tRED")), "INVALID_SKU")
    add("sku with NUL", raw_request("STOCK_GET", 65, str8(b"JACKET\x00")), "INVALID_SKU")
    add("sku with DEL 0x7F", raw_request("STOCK_GET", 66, str8(b"JACKET\x7f")), "INVALID_SKU")
    add("sku bad utf-8 (c3 28)", raw_request("RESERVE", 67, reserve_payload(1, 0, b"VESTE-\xc3\x28")), "INVALID_SKU")
    add("sku bad utf-8 overlong '/' (c0 af)", raw_request("STOCK_GET", 68, str8(b"A\xc0\xaf")), "INVALID_SKU")
    add("sku bad utf-8 overlong 3-byte (e0 80 af)", raw_request("STOCK_GET", 69, str8(b"A\xe0\x80\xaf")),
        "INVALID_SKU")
    add("sku bad utf-8 surrogate U+D800 (ed a0 80)", raw_request("STOCK_GET", 70, str8(b"A\xed\xa0\x80")),
        "INVALID_SKU")
    add("sku bad utf-8 above U+10FFFF (f4 90 80 80)", raw_request("STOCK_GET", 71, str8(b"A\xf4\x90\x80\x80")),
        "INVALID_SKU")
    add("sku bad utf-8 truncated sequence at end (e2 82)", raw_request("STOCK_GET", 72, str8(b"A\xe2\x82")),
        "INVALID_SKU")
    add("sku bad utf-8 lone continuation byte", raw_request("STOCK_GET", 73, str8(b"\x80A")), "INVALID_SKU")
    add("sku bad utf-8 byte f5", raw_request("STOCK_GET", 74, str8(b"A\xf5\x80\x80\x80")), "INVALID_SKU")
    add("sku bad utf-8 in stock_set", raw_request("STOCK_SET", 75, stock_set_payload(0, 5, sku=b"\xff")),
        "INVALID_SKU")
    add("sku empty in stock_adjust", raw_request("STOCK_ADJUST", 76, stock_adjust_payload(5, 1, b"")), "INVALID_SKU")
    add("sku bad in bundle line 1", raw_request("RESERVE_BUNDLE", 77, bundle_payload([(1, b"A"), (1, b"B\x01")])),
        "INVALID_SKU")
    # Quantities, TTLs
    add("reserve zero quantity", raw_request("RESERVE", 80, reserve_payload(0, 0, SKU)), "QUANTITY_INVALID")
    add("reserve quantity 1,000,001", raw_request("RESERVE", 81, reserve_payload(1_000_001, 0, SKU)),
        "QUANTITY_INVALID")
    add("reserve quantity 0xFFFFFFFF", raw_request("RESERVE", 82, reserve_payload(0xFFFFFFFF, 0, SKU)),
        "QUANTITY_INVALID")
    add("bundle line zero quantity", raw_request("RESERVE_BUNDLE", 83, bundle_payload([(1, b"A"), (0, b"B")])),
        "QUANTITY_INVALID")
    add("confirm quantity 1,000,001", raw_request("CONFIRM", 84, confirm_payload(1_000_001)), "QUANTITY_INVALID")
    add("reserve ttl 3,600,001", raw_request("RESERVE", 85, reserve_payload(1, 3_600_001, SKU)), "TTL_TOO_LONG")
    add("bundle ttl 0xFFFFFFFF", raw_request("RESERVE_BUNDLE", 86, bundle_payload([(1, b"A")], ttl_ms=0xFFFFFFFF)),
        "TTL_TOO_LONG")
    add("extend ttl 3,600,001", raw_request("EXTEND", 87, bytes.fromhex(T1) + u32(3_600_001)), "TTL_TOO_LONG")
    # Bundles
    add("bundle with 0 lines", raw_request("RESERVE_BUNDLE", 90, bundle_payload([])), "INVALID_ARGUMENT")
    add("bundle with 17 lines", raw_request(
        "RESERVE_BUNDLE", 91, bundle_payload([(1, b"L%02d" % i) for i in range(17)])), "INVALID_ARGUMENT")
    add("bundle duplicate sku", raw_request(
        "RESERVE_BUNDLE", 92, bundle_payload([(1, SKU.encode()), (2, b"SCARF"), (1, SKU.encode())])),
        "INVALID_ARGUMENT")
    add("bundle customer 65 bytes", raw_request("RESERVE_BUNDLE", 93, bundle_payload([(1, b"A")], customer=b"c" * 65)),
        "INVALID_ARGUMENT")
    # STOCK_SET
    add("stock_set unknown flag bit 0x08", raw_request("STOCK_SET", 100, stock_set_payload(0x08, 5)),
        "INVALID_ARGUMENT")
    add("stock_set expected_on_hand without its flag", raw_request("STOCK_SET", 101, stock_set_payload(0, 5, expected=5)),
        "INVALID_ARGUMENT")
    add("stock_set low_stock_threshold without its flag",
        raw_request("STOCK_SET", 102, stock_set_payload(0x05, 5, expected=5, threshold=1)), "INVALID_ARGUMENT")
    add("stock_set per_customer_limit without its flag",
        raw_request("STOCK_SET", 103, stock_set_payload(0x03, 5, limit=2)), "INVALID_ARGUMENT")
    add("stock_set on_hand 2^40+1", raw_request("STOCK_SET", 104, stock_set_payload(0, MAX_STOCK + 1)),
        "QUANTITY_INVALID")
    add("stock_set expected_on_hand 2^40+1", raw_request(
        "STOCK_SET", 105, stock_set_payload(0x01, 5, expected=MAX_STOCK + 1)), "QUANTITY_INVALID")
    add("value order: stock_set on_hand 2^40+1 checked before a threshold without its flag",
        raw_request("STOCK_SET", 106, stock_set_payload(0, MAX_STOCK + 1, threshold=1)), "QUANTITY_INVALID")
    add("value order: stock_set expected_on_hand 2^40+1 checked before a limit without its flag",
        raw_request("STOCK_SET", 107, stock_set_payload(0x01, 5, expected=MAX_STOCK + 1, limit=2)),
        "QUANTITY_INVALID")
    add("value order: stock_set unknown flag checked before on_hand 2^40+1",
        raw_request("STOCK_SET", 108, stock_set_payload(0x10, MAX_STOCK + 1)), "INVALID_ARGUMENT")
    # STOCK_ADJUST
    add("stock_adjust delta 0", raw_request("STOCK_ADJUST", 110, stock_adjust_payload(0)), "QUANTITY_INVALID")
    add("stock_adjust delta -(2^40+1)", raw_request("STOCK_ADJUST", 111, stock_adjust_payload(-MAX_STOCK - 1)),
        "QUANTITY_INVALID")
    add("stock_adjust delta i64 min", raw_request("STOCK_ADJUST", 112, stock_adjust_payload(-(1 << 63))),
        "QUANTITY_INVALID")
    add("stock_adjust unknown reason 7", raw_request("STOCK_ADJUST", 113, stock_adjust_payload(5, 7)),
        "INVALID_ARGUMENT")
    add("stock_adjust unknown reason 255", raw_request("STOCK_ADJUST", 114, stock_adjust_payload(-5, 255)),
        "INVALID_ARGUMENT")
    # STOCK_LIST
    add("stock_list limit 1001", raw_request("STOCK_LIST", 120, u32(0) + u16(1001)), "INVALID_ARGUMENT")
    add("stock_list limit 65535", raw_request("STOCK_LIST", 121, u32(7) + u16(0xFFFF)), "INVALID_ARGUMENT")
    # customer, idempotency key, order reference, client name
    add("reserve customer 65 bytes", raw_request("RESERVE", 130, reserve_payload(1, 0, SKU, b"c" * 65)),
        "INVALID_ARGUMENT")
    add("reserve idempotency key 65 bytes", raw_request("RESERVE", 131, reserve_payload(1, 0, SKU, b"", b"k" * 65)),
        "INVALID_ARGUMENT")
    add("confirm order reference with a control char",
        raw_request("CONFIRM", 132, confirm_payload(0, b"ORD-\x0a-1")), "INVALID_ARGUMENT")
    add("confirm order reference bad utf-8", raw_request("CONFIRM", 133, confirm_payload(0, b"ORD-\xe9")),
        "INVALID_ARGUMENT")
    add("confirm order reference 65 bytes", raw_request("CONFIRM", 134, confirm_payload(1, b"o" * 65)),
        "INVALID_ARGUMENT")
    add("hello client name 65 bytes", raw_request("HELLO", 135, u16(1) + str8(b"n" * 65) + str8(b"")),
        "INVALID_ARGUMENT")
    add("hello client name with DEL", raw_request("HELLO", 136, u16(1) + str8(b"cli\x7f") + str8(b"")),
        "INVALID_ARGUMENT")
    # SUBSCRIBE, CREDIT (§9)
    add("subscribe kinds bit 0 (progress) set", raw_request("SUBSCRIBE", 160, subscribe_payload(kinds=0x0001)),
        "INVALID_ARGUMENT")
    add("subscribe kinds bit 13 set (no kind 13)", raw_request("SUBSCRIBE", 161, subscribe_payload(kinds=0x2000)),
        "INVALID_ARGUMENT")
    add("subscribe kinds bit 15 set", raw_request("SUBSCRIBE", 171, subscribe_payload(kinds=0x8000)),
        "INVALID_ARGUMENT")
    add("subscribe kinds every valid bit plus bit 13 (0x3FFE)",
        raw_request("SUBSCRIBE", 172, subscribe_payload(kinds=KINDS_MASK | 0x2000)), "INVALID_ARGUMENT")
    add("subscribe kinds 0xFFFF", raw_request("SUBSCRIBE", 162, subscribe_payload(kinds=0xFFFF)), "INVALID_ARGUMENT")
    add("subscribe credit 1,048,577", raw_request("SUBSCRIBE", 163, subscribe_payload(credit=MAX_FEED_CREDIT + 1)),
        "INVALID_ARGUMENT")
    add("subscribe credit 0xFFFFFFFF", raw_request("SUBSCRIBE", 164, subscribe_payload(credit=0xFFFFFFFF)),
        "INVALID_ARGUMENT")
    add("subscribe sku_prefix 65 bytes", raw_request("SUBSCRIBE", 165, subscribe_payload(sku_prefix=b"S" * 65)),
        "INVALID_ARGUMENT")
    add("subscribe sku_prefix with a control char (a prefix is not a SKU: INVALID_ARGUMENT)",
        raw_request("SUBSCRIBE", 166, subscribe_payload(sku_prefix=b"JACKET\t")), "INVALID_ARGUMENT")
    add("subscribe sku_prefix ending mid-scalar (VESTE- c3)",
        raw_request("SUBSCRIBE", 167, subscribe_payload(sku_prefix=b"VESTE-\xc3")), "INVALID_ARGUMENT")
    add("credit 0", raw_request("CREDIT", 168, u32(0)), "INVALID_ARGUMENT")
    add("credit 1,048,577", raw_request("CREDIT", 169, u32(MAX_FEED_CREDIT + 1)), "INVALID_ARGUMENT")
    add("credit 0xFFFFFFFF", raw_request("CREDIT", 170, u32(0xFFFFFFFF)), "INVALID_ARGUMENT")
    # BACKUP_RELEASE, BACKUP_HOLD (§4): structure, then quantity, then sku
    add("backup_release empty payload", raw_request("BACKUP_RELEASE", 180, b""), "MALFORMED")
    add("backup_release quantity truncated (7 bytes)", raw_request("BACKUP_RELEASE", 181, u64(5)[:7]), "MALFORMED")
    add("backup_release sku count missing", raw_request("BACKUP_RELEASE", 182, u64(5)), "MALFORMED")
    add("backup_release sku length beyond payload",
        raw_request("BACKUP_RELEASE", 183, u64(5) + b"\x0cJACKET"), "MALFORMED")
    add("backup_release trailing byte", raw_request("BACKUP_RELEASE", 184, backup_payload(5) + b"\x00"),
        "MALFORMED")
    add("backup_release quantity 2^40+1", raw_request("BACKUP_RELEASE", 185, backup_payload(MAX_STOCK + 1)),
        "QUANTITY_INVALID")
    add("backup_release quantity 0xFFFFFFFFFFFFFFFF",
        raw_request("BACKUP_RELEASE", 186, backup_payload(0xFFFFFFFFFFFFFFFF)), "QUANTITY_INVALID")
    add("backup_release sku empty", raw_request("BACKUP_RELEASE", 187, backup_payload(0, b"")), "INVALID_SKU")
    add("backup_release sku 65 bytes", raw_request("BACKUP_RELEASE", 188, backup_payload(1, b"S" * 65)),
        "INVALID_SKU")
    add("backup_hold empty payload", raw_request("BACKUP_HOLD", 190, b""), "MALFORMED")
    add("backup_hold truncated (sku cut)", raw_request("BACKUP_HOLD", 191, backup_payload(5)[:-1]), "MALFORMED")
    add("backup_hold trailing byte", raw_request("BACKUP_HOLD", 192, backup_payload(5) + b"\x00"), "MALFORMED")
    add("backup_hold quantity 0", raw_request("BACKUP_HOLD", 193, backup_payload(0)), "QUANTITY_INVALID")
    add("backup_hold quantity 2^40+1", raw_request("BACKUP_HOLD", 194, backup_payload(MAX_STOCK + 1)),
        "QUANTITY_INVALID")
    add("backup_hold quantity 0xFFFFFFFFFFFFFFFF",
        raw_request("BACKUP_HOLD", 195, backup_payload(0xFFFFFFFFFFFFFFFF)), "QUANTITY_INVALID")
    add("backup_hold sku with control char", raw_request("BACKUP_HOLD", 196, backup_payload(1, b"JACKET\x1f")),
        "INVALID_SKU")
    add("backup_hold sku bad utf-8", raw_request("BACKUP_HOLD", 197, backup_payload(1, b"VESTE-\xc3\x28")),
        "INVALID_SKU")
    add("structure before values: backup_hold quantity 0 with a trailing byte",
        raw_request("BACKUP_HOLD", 198, backup_payload(0) + b"\x00"), "MALFORMED")
    add("value order: backup_hold quantity 0 before bad sku",
        raw_request("BACKUP_HOLD", 199, backup_payload(0, b"")), "QUANTITY_INVALID")
    add("value order: backup_release quantity 2^40+1 before bad sku",
        raw_request("BACKUP_RELEASE", 189, backup_payload(MAX_STOCK + 1, b"\xff")), "QUANTITY_INVALID")
    # STAGE (§4 "STAGE" check order): structure; line_count 1..4096; per line in line order:
    # on_hand <= 2^40, backup <= on_hand, sku, sku not on an earlier line.
    line = (10, 2, 0, 0, SKU.encode())
    add("stage empty payload", raw_request("STAGE", 200, b""), "MALFORMED")
    add("stage line_count truncated (1 byte)", raw_request("STAGE", 201, b"\x01"), "MALFORMED")
    add("stage line_count 2 with 1 line", raw_request("STAGE", 202, stage_payload([line], count=2)), "MALFORMED")
    add("stage line cut inside per_customer_limit",
        raw_request("STAGE", 203, u16(1) + u64(10) + u64(2) + u32(0) + u32(0)[:2]), "MALFORMED")
    add("stage line without its sku count", raw_request("STAGE", 204, u16(1) + u64(10) + u64(2) + u32(0) + u32(0)),
        "MALFORMED")
    add("stage sku length beyond payload", raw_request("STAGE", 205, stage_payload([line])[:-1]), "MALFORMED")
    add("stage trailing byte", raw_request("STAGE", 206, stage_payload([line]) + b"\x00"), "MALFORMED")
    add("stage line_count 0xFFFF with 1 line (structure before the line_count range)",
        raw_request("STAGE", 207, stage_payload([line], count=0xFFFF)), "MALFORMED")
    add("structure before values: stage line_count 0 with a trailing byte",
        raw_request("STAGE", 208, stage_payload([]) + b"\x00"), "MALFORMED")
    add("structure before values: stage backup > on_hand and a trailing byte",
        raw_request("STAGE", 209, stage_payload([(1, 2, 0, 0, b"")]) + b"\x00"), "MALFORMED")
    add("stage line_count 0", raw_request("STAGE", 210, stage_payload([])), "INVALID_ARGUMENT")
    # A line is 25 bytes plus a SKU of at least 1 byte, so 4,097 lines (even 4,096) cannot fit the default
    # max_frame of 65,536: line_count 4097 cannot reach the value checks under it (no INVALID_ARGUMENT vector).
    stage_4097 = 8 + 2 + (MAX_STAGE_LINES + 1) * (25 + 1)
    assert stage_4097 + 4 > MAX_FRAME
    add("stage of 4097 one-byte-sku lines: frame beyond max_frame 65536 (header only)",
        header(stage_4097, OPCODES["STAGE"], 0, 0, 0, 211), "too_large")
    add("stage on_hand 2^40+1", raw_request("STAGE", 212, stage_payload([(MAX_STOCK + 1, 0, 0, 0, b"A")])),
        "QUANTITY_INVALID")
    add("stage on_hand 0xFFFFFFFFFFFFFFFF, backup equal",
        raw_request("STAGE", 213, stage_payload([(0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0, 0, b"A")])),
        "QUANTITY_INVALID")
    add("stage backup > on_hand", raw_request("STAGE", 214, stage_payload([(5, 6, 0, 0, b"A")])), "QUANTITY_INVALID")
    add("stage backup 1 with on_hand 0", raw_request("STAGE", 215, stage_payload([(0, 1, 0, 0, b"A")])),
        "QUANTITY_INVALID")
    add("stage line 2 backup > on_hand", raw_request(
        "STAGE", 216, stage_payload([(5, 5, 0, 0, b"A"), (5, 0, 0, 0, b"B"), (MAX_STOCK, MAX_STOCK + 1, 0, 0, b"C")])),
        "QUANTITY_INVALID")
    add("stage sku empty", raw_request("STAGE", 217, stage_payload([(5, 0, 0, 0, b"")])), "INVALID_SKU")
    add("stage sku 65 bytes", raw_request("STAGE", 218, stage_payload([(5, 0, 0, 0, b"S" * 65)])), "INVALID_SKU")
    add("stage line 1 sku with DEL 0x7F",
        raw_request("STAGE", 219, stage_payload([(5, 0, 0, 0, b"A"), (5, 0, 0, 0, b"B\x7f")])), "INVALID_SKU")
    add("stage line 1 sku overlong utf-8 (c0 af)",
        raw_request("STAGE", 220, stage_payload([(5, 0, 0, 0, b"A"), (5, 0, 0, 0, b"B\xc0\xaf")])), "INVALID_SKU")
    add("stage duplicate sku (lines 0 and 2)", raw_request(
        "STAGE", 221, stage_payload([(5, 0, 0, 0, SKU.encode()), (5, 0, 0, 0, b"SCARF"), (9, 1, 0, 0, SKU.encode())])),
        "INVALID_ARGUMENT")
    add("stage duplicate multibyte sku", raw_request(
        "STAGE", 222, stage_payload([(5, 0, 0, 0, SKU_FR.encode()), (5, 0, 0, 0, SKU_FR.encode())])),
        "INVALID_ARGUMENT")
    add("value order: stage on_hand 2^40+1 before bad sku",
        raw_request("STAGE", 224, stage_payload([(MAX_STOCK + 1, 0, 0, 0, b"")])), "QUANTITY_INVALID")
    add("value order: stage backup > on_hand before bad sku",
        raw_request("STAGE", 225, stage_payload([(5, 6, 0, 0, b"\xff")])), "QUANTITY_INVALID")
    add("value order: stage line 0 bad sku before line 1 on_hand 2^40+1",
        raw_request("STAGE", 226, stage_payload([(5, 0, 0, 0, b""), (MAX_STOCK + 1, 0, 0, 0, b"B")])), "INVALID_SKU")
    add("value order: stage line 0 backup > on_hand before line 1 bad sku",
        raw_request("STAGE", 227, stage_payload([(5, 6, 0, 0, b"A"), (5, 0, 0, 0, b"")])), "QUANTITY_INVALID")
    add("value order: stage duplicate line's backup > on_hand before the duplicate",
        raw_request("STAGE", 228, stage_payload([(5, 0, 0, 0, b"A"), (5, 6, 0, 0, b"A")])), "QUANTITY_INVALID")
    add("value order: stage line 1 duplicate before line 2 bad sku (per line, in line order)",
        raw_request("STAGE", 229, stage_payload([(5, 0, 0, 0, b"A"), (5, 0, 0, 0, b"A"), (5, 0, 0, 0, b"")])),
        "INVALID_ARGUMENT")
    add("value order: stage line 1 duplicate before line 2 on_hand 2^40+1", raw_request(
        "STAGE", 230, stage_payload([(5, 0, 0, 0, b"A"), (5, 0, 0, 0, b"A"), (MAX_STOCK + 1, 0, 0, 0, b"B")])),
        "INVALID_ARGUMENT")
    # Field order (§4: values in layout order, first failure is the answer)
    add("value order: reserve zero quantity before bad sku",
        raw_request("RESERVE", 140, reserve_payload(0, 0, b"")), "QUANTITY_INVALID")
    add("value order: reserve ttl before bad sku",
        raw_request("RESERVE", 141, reserve_payload(1, MAX_TTL_MS + 1, b"\xff")), "TTL_TOO_LONG")
    add("value order: reserve bad sku before long customer",
        raw_request("RESERVE", 142, reserve_payload(1, 0, b"", b"c" * 65)), "INVALID_SKU")
    add("value order: bundle ttl before 0 lines",
        raw_request("RESERVE_BUNDLE", 143, bundle_payload([], ttl_ms=MAX_TTL_MS + 1)), "TTL_TOO_LONG")
    add("value order: bundle 17 lines before a zero quantity", raw_request(
        "RESERVE_BUNDLE", 144, bundle_payload([(0, b"L%02d" % i) for i in range(17)])), "INVALID_ARGUMENT")
    add("value order: bundle line 0 bad sku before line 1 zero quantity",
        raw_request("RESERVE_BUNDLE", 145, bundle_payload([(1, b""), (0, b"B")])), "INVALID_SKU")
    add("value order: confirm quantity before bad order reference",
        raw_request("CONFIRM", 146, confirm_payload(2_000_000, b"\x00")), "QUANTITY_INVALID")
    add("value order: stock_adjust delta 0 before unknown reason",
        raw_request("STOCK_ADJUST", 147, stock_adjust_payload(0, 9, b"")), "QUANTITY_INVALID")
    add("value order: stock_adjust unknown reason before bad sku",
        raw_request("STOCK_ADJUST", 148, stock_adjust_payload(1, 9, b"")), "INVALID_ARGUMENT")
    # Replication and cluster control (§10): structure, then values in layout order; every value failure is
    # INVALID_ARGUMENT (a node name or an address is not a SKU).
    hello = repl_hello_payload()
    add("repl_hello empty payload", raw_request("REPL_HELLO", 250, b""), "MALFORMED")
    add("repl_hello truncated (only fingerprint)", raw_request("REPL_HELLO", 251, u64(FINGERPRINT)), "MALFORMED")
    add("repl_hello truncated (last_seq cut)", raw_request("REPL_HELLO", 252, hello[:30]), "MALFORMED")
    add("repl_hello node count missing", raw_request("REPL_HELLO", 253, hello[:32]), "MALFORMED")
    add("repl_hello node length beyond payload",
        raw_request("REPL_HELLO", 254, hello[:32] + b"\x20node-b"), "MALFORMED")
    add("repl_hello cluster count missing", raw_request("REPL_HELLO", 255, hello[:32] + str8(b"node-b")),
        "MALFORMED")
    add("repl_hello truncated (cluster's last byte missing)", raw_request("REPL_HELLO", 256, hello[:-1]),
        "MALFORMED")
    add("repl_hello trailing byte", raw_request("REPL_HELLO", 257, hello + b"\x00"), "MALFORMED")
    add("repl_hello node empty", raw_request("REPL_HELLO", 258, repl_hello_payload(node=b"")), "INVALID_ARGUMENT")
    add("repl_hello node 65 bytes", raw_request("REPL_HELLO", 259, repl_hello_payload(node=b"n" * 65)),
        "INVALID_ARGUMENT")
    add("repl_hello node 66 bytes of 2-byte utf-8",
        raw_request("REPL_HELLO", 260, repl_hello_payload(node=("é" * 33).encode())), "INVALID_ARGUMENT")
    add("repl_hello node with a control char (a node is not a SKU: INVALID_ARGUMENT)",
        raw_request("REPL_HELLO", 261, repl_hello_payload(node=b"node\tb")), "INVALID_ARGUMENT")
    add("repl_hello node with DEL 0x7F", raw_request("REPL_HELLO", 262, repl_hello_payload(node=b"node-b\x7f")),
        "INVALID_ARGUMENT")
    add("repl_hello node bad utf-8 (c3 28)", raw_request("REPL_HELLO", 263, repl_hello_payload(node=b"n\xc3\x28")),
        "INVALID_ARGUMENT")
    add("repl_hello cluster empty", raw_request("REPL_HELLO", 264, repl_hello_payload(cluster=b"")),
        "INVALID_ARGUMENT")
    add("repl_hello cluster 65 bytes", raw_request("REPL_HELLO", 265, repl_hello_payload(cluster=b"c" * 65)),
        "INVALID_ARGUMENT")
    add("repl_hello cluster with NUL", raw_request("REPL_HELLO", 266, repl_hello_payload(cluster=b"eu\x00")),
        "INVALID_ARGUMENT")
    add("repl_hello cluster overlong utf-8 (c0 af)",
        raw_request("REPL_HELLO", 267, repl_hello_payload(cluster=b"eu\xc0\xaf")), "INVALID_ARGUMENT")
    add("repl_hello cluster surrogate U+D800 (ed a0 80)",
        raw_request("REPL_HELLO", 268, repl_hello_payload(cluster=b"eu\xed\xa0\x80")), "INVALID_ARGUMENT")
    add("structure before values: repl_hello empty node and a trailing byte",
        raw_request("REPL_HELLO", 269, repl_hello_payload(node=b"") + b"\x00"), "MALFORMED")
    add("structure before values: repl_hello bad cluster, truncated",
        raw_request("REPL_HELLO", 270, repl_hello_payload(cluster=b"\xff\xfe")[:-1]), "MALFORMED")
    add("repl_ack empty payload", raw_request("REPL_ACK", 280, b""), "MALFORMED")
    add("repl_ack only epoch", raw_request("REPL_ACK", 281, u64(3)), "MALFORMED")
    add("repl_ack truncated (15 bytes)", raw_request("REPL_ACK", 282, (u64(3) + u64(52311))[:15]), "MALFORMED")
    add("repl_ack trailing byte", raw_request("REPL_ACK", 283, u64(3) + u64(52311) + b"\x00"), "MALFORMED")
    add("repl_ack epoch 0", raw_request("REPL_ACK", 284, u64(0) + u64(52311)), "INVALID_ARGUMENT")
    add("structure before values: repl_ack epoch 0 with a trailing byte",
        raw_request("REPL_ACK", 285, u64(0) + u64(0) + b"\x00"), "MALFORMED")
    addr = ADDR_A.encode()
    add("role empty payload", raw_request("ROLE", 290, b""), "MALFORMED")
    add("role only the role byte", raw_request("ROLE", 291, bytes([ROLE_PRIMARY])), "MALFORMED")
    add("role epoch truncated", raw_request("ROLE", 292, role_payload(ROLE_PRIMARY, 1)[:8]), "MALFORMED")
    add("role primary count missing", raw_request("ROLE", 293, role_payload(ROLE_PRIMARY, 1)[:9]), "MALFORMED")
    add("role primary length beyond payload",
        raw_request("ROLE", 294, role_payload(ROLE_STANDBY, 4, addr)[:-1]), "MALFORMED")
    add("role trailing byte", raw_request("ROLE", 295, role_payload(ROLE_PRIMARY, 1) + b"\x00"), "MALFORMED")
    add("role 0", raw_request("ROLE", 296, role_payload(0, 1)), "INVALID_ARGUMENT")
    add("role 3", raw_request("ROLE", 297, role_payload(3, 1, addr)), "INVALID_ARGUMENT")
    add("role 255", raw_request("ROLE", 298, role_payload(255, 1)), "INVALID_ARGUMENT")
    add("role primary epoch 0", raw_request("ROLE", 299, role_payload(ROLE_PRIMARY, 0)), "INVALID_ARGUMENT")
    add("role standby epoch 0", raw_request("ROLE", 300, role_payload(ROLE_STANDBY, 0, addr)), "INVALID_ARGUMENT")
    add("role standby address 65 bytes", raw_request("ROLE", 301, role_payload(ROLE_STANDBY, 4, b"a" * 65)),
        "INVALID_ARGUMENT")
    add("role standby address with a newline",
        raw_request("ROLE", 302, role_payload(ROLE_STANDBY, 4, addr + b"\n")), "INVALID_ARGUMENT")
    add("role standby address bad utf-8 (truncated sequence e2 82)",
        raw_request("ROLE", 303, role_payload(ROLE_STANDBY, 4, b"10.0.0.1\xe2\x82")), "INVALID_ARGUMENT")
    add("role primary with an address", raw_request("ROLE", 304, role_payload(ROLE_PRIMARY, 4, addr)),
        "INVALID_ARGUMENT")
    add("role standby without an address", raw_request("ROLE", 305, role_payload(ROLE_STANDBY, 4)),
        "INVALID_ARGUMENT")
    add("structure before values: role 0 with a trailing byte",
        raw_request("ROLE", 306, role_payload(0, 0) + b"\x00"), "MALFORMED")
    add("structure before values: role standby without an address, primary count missing",
        raw_request("ROLE", 307, role_payload(ROLE_STANDBY, 4)[:-1]), "MALFORMED")
    add("fence empty payload", raw_request("FENCE", 310, b""), "MALFORMED")
    add("fence truncated (7 bytes)", raw_request("FENCE", 311, u64(123)[:7]), "MALFORMED")
    add("fence trailing byte", raw_request("FENCE", 312, u64(123) + b"\x00"), "MALFORMED")
    nodes2 = [b"node-b", b"node-c"]
    add("isr_set empty payload", raw_request("ISR_SET", 320, b""), "MALFORMED")
    add("isr_set count missing", raw_request("ISR_SET", 321, u64(3)), "MALFORMED")
    add("isr_set epoch truncated", raw_request("ISR_SET", 322, u64(3)[:5]), "MALFORMED")
    add("isr_set count 2 with 1 node", raw_request("ISR_SET", 323, isr_payload(3, nodes2[:1], count=2)),
        "MALFORMED")
    add("isr_set node length beyond payload", raw_request("ISR_SET", 324, isr_payload(3, nodes2)[:-1]), "MALFORMED")
    add("isr_set trailing byte", raw_request("ISR_SET", 325, isr_payload(3, nodes2) + b"\x00"), "MALFORMED")
    add("isr_set 17 nodes announced, 16 present (structure before the count range)", raw_request(
        "ISR_SET", 326, isr_payload(3, [b"n%02d" % i for i in range(16)], count=17)), "MALFORMED")
    add("isr_set epoch 0", raw_request("ISR_SET", 327, isr_payload(0, [])), "INVALID_ARGUMENT")
    add("isr_set 17 nodes", raw_request("ISR_SET", 328, isr_payload(3, [b"n%02d" % i for i in range(17)])),
        "INVALID_ARGUMENT")
    add("isr_set 255 nodes", raw_request("ISR_SET", 329, isr_payload(3, [b"n%03d" % i for i in range(255)])),
        "INVALID_ARGUMENT")
    add("isr_set node empty", raw_request("ISR_SET", 330, isr_payload(3, [b""])), "INVALID_ARGUMENT")
    add("isr_set node 65 bytes", raw_request("ISR_SET", 331, isr_payload(3, [b"node-b", b"n" * 65])),
        "INVALID_ARGUMENT")
    add("isr_set node 1 with a tab", raw_request("ISR_SET", 332, isr_payload(3, [b"node-b", b"node\tc"])),
        "INVALID_ARGUMENT")
    add("isr_set node bad utf-8 (lone continuation byte)",
        raw_request("ISR_SET", 333, isr_payload(3, [b"\x80node"])), "INVALID_ARGUMENT")
    add("isr_set duplicate node (nodes 0 and 2)",
        raw_request("ISR_SET", 334, isr_payload(3, [b"node-b", b"node-c", b"node-b"])), "INVALID_ARGUMENT")
    add("isr_set duplicate multibyte node",
        raw_request("ISR_SET", 335, isr_payload(3, ["nœud-é".encode(), "nœud-é".encode()])), "INVALID_ARGUMENT")
    add("structure before values: isr_set epoch 0 with a trailing byte",
        raw_request("ISR_SET", 336, isr_payload(0, []) + b"\x00"), "MALFORMED")
    add("structure before values: isr_set duplicate node, truncated",
        raw_request("ISR_SET", 337, isr_payload(3, [b"node-b", b"node-b"])[:-1]), "MALFORMED")
    add("cluster_status with a trailing byte", raw_request("CLUSTER_STATUS", 340, b"\x00"), "MALFORMED")
    add("cluster_status with a role payload", raw_request("CLUSTER_STATUS", 341, role_payload(ROLE_PRIMARY, 1)),
        "MALFORMED")
    return v


# ---------------------------------------------------------------------------


def render(vectors):
    names = [x["name"] for x in vectors]
    assert len(names) == len(set(names)), "vector names are unique"
    return json.dumps({"version": 1, "vectors": vectors}, ensure_ascii=False, indent=1) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outputs = {
        "requests.json": render(requests()),
        "responses.json": render(responses()),
        "malformed.json": render(malformed()),
    }
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in outputs.items():
        path = os.path.join(here, name)
        if check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() != text:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
        else:
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
    if stale:
        print("stale vector files: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
