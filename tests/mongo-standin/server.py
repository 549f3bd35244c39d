#!/usr/bin/env python3
"""A local MongoDB stand-in for tests: speaks the MongoDB wire protocol, stores with mongomock.

Why: no MongoDB server (nor Cosmos DB) can be had on the project's machines, yet the Mongo
`TaskStore` must be tested through the real Rust `mongodb` driver. This server answers the
driver exactly as a standalone `mongod` would for the commands the store and the driver use
(handshake and monitoring, CRUD, cursors, indexes, drops), with mongomock as the query and
update engine. It is a protocol stand-in for tests, not a database: everything lives in memory
and every command runs under one lock (so it is serialisable, which a real server is not
required to be). See README.md for what is and is not implemented.

Wire protocol: OP_MSG (opcode 2013; body section kind 0, document sequences kind 1, optional
CRC-32C checksum, moreToCome for unacknowledged writes) and legacy OP_QUERY (2004) on
`<db>.$cmd` for old handshakes, answered with OP_REPLY (1).
"""

import argparse
import datetime
import itertools
import os
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback

import bson
import mongomock
import mongomock.collection
import pymongo
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.int64 import Int64
from mongomock import filtering
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013

FLAG_CHECKSUM = 1 << 0
FLAG_MORE_TO_COME = 1 << 1
FLAG_EXHAUST_ALLOWED = 1 << 16
# Bits 0-15 are "required": a receiver must reject a message with an unknown one.
KNOWN_REQUIRED_FLAGS = FLAG_CHECKSUM | FLAG_MORE_TO_COME

MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
# Wire version of each MongoDB server release, as the server's `hello` reports it in
# `maxWireVersion` (MongoDB source, src/mongo/db/wire_version.h: 4.0 = 7, 4.2 = 8, 4.4 = 9,
# 5.0 = 13, 6.0 = 17, 7.0 = 21, 8.0 = 25). Cosmos DB for MongoDB answers with the wire version
# of the account's `serverVersion`. The Rust driver 3.x refuses anything below 9
# (DRIVER_MIN_WIRE_VERSION in mongodb-3.x/src/sdam/description/server.rs).
WIRE_VERSIONS = {"3.6": 6, "4.0": 7, "4.2": 8, "4.4": 9, "5.0": 13, "6.0": 17, "7.0": 21,
                 "8.0": 25}
# Default: 6.0, the serverVersion infra/main.bicep gives the Cosmos account.
SERVER_VERSION = "6.0"
MAX_WIRE_VERSION = WIRE_VERSIONS[SERVER_VERSION]
DEFAULT_BATCH = 101
# Batches stay well under one message, like the server's 16 MiB reply batches.
BATCH_BYTES = MAX_BSON_OBJECT_SIZE - 1024 * 1024
CURSOR_IDLE_SECONDS = 600

CODEC = CodecOptions(
    document_class=dict,
    tz_aware=True,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)

CODE_NAMES = {
    1: "InternalError",
    2: "BadValue",
    9: "FailedToParse",
    14: "TypeMismatch",
    20: "IllegalOperation",
    26: "NamespaceNotFound",
    43: "CursorNotFound",
    48: "NamespaceExists",
    59: "CommandNotFound",
    66: "ImmutableField",
    67: "CannotCreateIndex",
    72: "InvalidOptions",
    73: "InvalidNamespace",
    85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict",
    115: "CommandNotSupported",
    238: "NotImplemented",
    11000: "DuplicateKey",
}

# Fields any command may carry that do not change what it does here (sessions, cluster time,
# read/write concerns, API versioning, timeouts, comments).
GENERIC_FIELDS = {
    "$db", "lsid", "$clusterTime", "txnNumber", "autocommit", "$readPreference",
    "readConcern", "writeConcern", "maxTimeMS", "comment", "apiVersion", "apiStrict",
    "apiDeprecationErrors", "$audit", "$client", "startTransaction",
}

UPDATE_OPERATORS = {
    "$set", "$unset", "$inc", "$mul", "$rename", "$min", "$max", "$currentDate",
    "$setOnInsert", "$push", "$pull", "$pullAll", "$addToSet", "$pop", "$bit",
}

LOG_QUIET = False


def log(msg):
    """Debug line on stderr (suppressed by --quiet)."""
    if not LOG_QUIET:
        print(f"mongo-standin: {msg}", file=sys.stderr, flush=True)


def warn(msg):
    """Always printed: internal errors and protocol violations."""
    print(f"mongo-standin: {msg}", file=sys.stderr, flush=True)


class CommandError(Exception):
    """A command failure answered as {ok: 0, errmsg, code, codeName}."""

    def __init__(self, code, errmsg, **extra):
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.extra = extra

    def document(self):
        d = {"ok": 0.0, "errmsg": self.errmsg, "code": self.code,
             "codeName": CODE_NAMES.get(self.code, "UnknownError")}
        d.update(self.extra)
        return d


class ProtocolError(Exception):
    """A malformed message: the connection is closed, as mongod does."""


# ---------------------------------------------------------------------------------------------
# mongomock adjustments

def _num_add(old, inc):
    """MongoDB's numeric $inc typing: any double -> double, any int64 or overflow -> int64."""
    if isinstance(old, bool) or isinstance(inc, bool):
        raise OperationFailure("Cannot apply $inc to a value of non-numeric type", code=14)
    result = old + inc
    if isinstance(result, int):
        if isinstance(old, Int64) or isinstance(inc, Int64) or not -2**31 <= result < 2**31:
            return Int64(result)
    return result


_original_inc = mongomock.collection._updaters["$inc"]


def _inc_updater(doc, field_name, value):
    """$inc that keeps int64 fields int64 (mongomock's plain `+` narrows them to int)."""
    if isinstance(doc, dict):
        old = doc.get(field_name, 0)
        if not isinstance(old, (int, float)) or isinstance(old, bool):
            raise OperationFailure(
                f"Cannot apply $inc to a value of non-numeric type. "
                f"{{_id: ...}} has the field '{field_name}' of non-numeric type", code=14)
        doc[field_name] = _num_add(old, value)
        return
    _original_inc(doc, field_name, value)


mongomock.collection._updaters["$inc"] = _inc_updater


def crc32c(data):
    """CRC-32C (Castagnoli), the OP_MSG checksum."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _make_crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


# ---------------------------------------------------------------------------------------------
# Cursors

class Cursor:
    """Documents of a find/aggregate/list* not yet sent."""

    def __init__(self, ns, docs):
        self.ns = ns
        self.docs = docs
        self.pos = 0
        self.used = time.monotonic()


def take_batch(docs, start, batch_size):
    """Up to batch_size documents (0 = no count limit) from start, within BATCH_BYTES."""
    out = []
    size = 0
    i = start
    while i < len(docs):
        if batch_size and len(out) >= batch_size:
            break
        n = len(bson.encode(docs[i], codec_options=CODEC))
        if out and size + n > BATCH_BYTES:
            break
        out.append(docs[i])
        size += n
        i += 1
    return out, i


# ---------------------------------------------------------------------------------------------
# The command engine

class Engine:
    """All databases, cursors and the command implementations. One lock serialises commands."""

    def __init__(self, throttle_every=0):
        self.client = mongomock.MongoClient()
        self.lock = threading.RLock()
        self.cursors = {}
        self.started = time.time()
        # Fault injection: every Nth data command fails as Cosmos DB's throttling does.
        self.throttle_every = throttle_every
        self.data_commands = 0

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def coll_name(body, cmd):
        name = body.get(cmd)
        if not isinstance(name, str) or not name:
            raise CommandError(73, f"collection name must be a non-empty string, not {name!r}")
        if name.startswith("system.") or "$" in name:
            raise CommandError(73, f"Invalid collection name: {name}")
        return name

    def exists(self, db, coll):
        return coll in self.client[db].list_collection_names()

    def new_cursor(self, ns, docs, batch_size, single_batch=False):
        """The `cursor` document of a first reply; stores the rest for getMore."""
        if batch_size is None:
            batch_size = DEFAULT_BATCH
        if not isinstance(batch_size, int) or batch_size < 0:
            raise CommandError(2, f"batchSize must be a non-negative integer, not {batch_size!r}")
        if single_batch:
            first, end = take_batch(docs, 0, batch_size)
            return {"firstBatch": first, "id": Int64(0), "ns": ns}
        if batch_size == 0:
            first, end = [], 0
        else:
            first, end = take_batch(docs, 0, batch_size)
        cid = 0
        if end < len(docs):
            self.sweep_cursors()
            cid = random.randint(1, 2**62)
            cur = Cursor(ns, docs)
            cur.pos = end
            self.cursors[cid] = cur
        return {"firstBatch": first, "id": Int64(cid), "ns": ns}

    def sweep_cursors(self):
        now = time.monotonic()
        for cid in [c for c, cur in self.cursors.items() if now - cur.used > CURSOR_IDLE_SECONDS]:
            del self.cursors[cid]

    @staticmethod
    def reject(body, *fields):
        for f in fields:
            if body.get(f) is not None:
                raise CommandError(238, f"the MongoDB stand-in does not implement '{f}'")

    @staticmethod
    def sort_list(sort):
        if not sort:
            return None
        if not isinstance(sort, dict):
            raise CommandError(2, "sort must be a document")
        out = []
        for k, v in sort.items():
            if isinstance(v, dict):
                raise CommandError(238, f"the MongoDB stand-in does not implement sort by {v}")
            if v not in (1, -1):
                raise CommandError(2, f"bad sort specification for '{k}': {v!r}")
            out.append((k, int(v)))
        return out

    @staticmethod
    def check_update(u, multi):
        """'replacement' or 'operators'; raises for pipelines and malformed updates."""
        if isinstance(u, list):
            raise CommandError(238, "the MongoDB stand-in does not implement pipeline updates")
        if not isinstance(u, dict):
            raise CommandError(14, "update must be a document")
        dollar = [k for k in u if k.startswith("$")]
        if not dollar:
            if multi:
                raise CommandError(9, "multi update is not supported for replacement-style update")
            return "replacement"
        for k in u:
            if k not in UPDATE_OPERATORS:
                raise CommandError(9, f"Unknown modifier: {k}. Expected a valid update modifier "
                                      "or pipeline-style update specified as an array")
            if not isinstance(u[k], dict):
                raise CommandError(9, f"Modifiers operate on fields but we found type "
                                      f"{type(u[k]).__name__} instead")
        if not any(u[k] for k in u):
            raise CommandError(9, "'update' is empty. You must specify a field like so: "
                                  "{$set: {<field>: ...}}")
        return "operators"

    @staticmethod
    def write_error(index, exc, ns, doc=None):
        """A writeErrors entry for exception exc raised by statement `index`."""
        if isinstance(exc, DuplicateKeyError):
            msg = f"E11000 duplicate key error collection: {ns}"
            entry = {"index": index, "code": 11000}
            if doc is not None and "_id" in doc:
                msg += f" dup key: {{ _id: {doc['_id']!r} }}"
            entry["errmsg"] = msg
            return entry
        if isinstance(exc, CommandError):
            return {"index": index, "code": exc.code, "errmsg": exc.errmsg}
        code, msg = Engine.failure_code(exc)
        return {"index": index, "code": code, "errmsg": msg}

    @staticmethod
    def failure_code(exc):
        msg = str(exc)
        code = getattr(exc, "code", None)
        if "_id field cannot be changed" in msg or "_id' was found to have been altered" in msg:
            code = 66
        if not isinstance(code, int):
            code = 2
        return code, msg

    # -- dispatch ------------------------------------------------------------------------------

    def run(self, body, conn_id, via="OP_MSG"):
        """Runs one command document; returns the reply document (never raises)."""
        if not body:
            return CommandError(59, "empty command").document()
        name = next(iter(body))
        db = body.get("$db", "admin")
        target = body.get(name)
        log(f"conn{conn_id} {name} db={db}"
            + (f" coll={target}" if isinstance(target, str) else "")
            + ("" if via == "OP_MSG" else f" ({via})"))
        handler = COMMANDS.get(name)
        if handler is None:
            return CommandError(59, f"no such command: '{name}'").document()
        if body.get("startTransaction") or body.get("autocommit") is False:
            return CommandError(20, "Transaction numbers are only allowed on a replica set "
                                    "member or mongos (the MongoDB stand-in is standalone)").document()
        kwargs = {}
        if self.throttle_every and name in THROTTLED_COMMANDS:
            with self.lock:
                self.data_commands += 1
                throttle = self.data_commands % self.throttle_every == 0
            docs = body.get("documents")
            if throttle and name == "insert" and isinstance(docs, list) and len(docs) > 1:
                # Cosmos throttles a batch part-way: the first half is written, the rest fail.
                kwargs["throttle_from"] = (len(docs) + 1) // 2
                log(f"conn{conn_id} insert: injected throttling of documents "
                    f"{kwargs['throttle_from']}..{len(docs) - 1}")
            elif throttle:
                log(f"conn{conn_id} {name}: injected throttling error 16500")
                return throttled_error().document()
        try:
            with self.lock:
                reply = handler(self, body, db, conn_id, **kwargs)
        except CommandError as e:
            return e.document()
        except DuplicateKeyError as e:
            return CommandError(11000, f"E11000 duplicate key error: {e}").document()
        except NotImplementedError as e:
            return CommandError(238, f"the MongoDB stand-in does not implement this: {e}").document()
        except (OperationFailure, CollectionInvalid) as e:
            code, msg = self.failure_code(e)
            return CommandError(code, msg).document()
        except Exception as e:  # noqa: BLE001 - any bug answers an error, never kills the server
            warn(f"internal error in {name}: {e!r}\n{traceback.format_exc()}")
            return CommandError(1, f"MongoDB stand-in internal error in {name}: {e!r}").document()
        reply.setdefault("ok", 1.0)
        return reply

    # -- handshake, monitoring, sessions -------------------------------------------------------

    def cmd_hello(self, body, db, conn_id):
        legacy = next(iter(body)) in ("isMaster", "ismaster")
        reply = {
            "ismaster" if legacy else "isWritablePrimary": True,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": datetime.datetime.now(datetime.timezone.utc),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": conn_id,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
        }
        if body.get("helloOk"):
            reply["helloOk"] = True
        # No topologyVersion: drivers then poll instead of streaming (awaitable hello).
        # No compression, no SASL mechanisms: neither is implemented.
        return reply

    def cmd_ping(self, body, db, conn_id):
        return {}

    def cmd_build_info(self, body, db, conn_id):
        return {
            "version": f"{SERVER_VERSION}.0",
            "gitVersion": "mongo-standin",
            "versionArray": [int(p) for p in SERVER_VERSION.split(".")] + [0, 0],
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "storageEngines": ["mongomock"],
            "modules": [],
        }

    def cmd_noop_sessions(self, body, db, conn_id):
        return {}

    def cmd_whatsmyuri(self, body, db, conn_id):
        return {"you": "127.0.0.1:0"}

    def cmd_connection_status(self, body, db, conn_id):
        return {"authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}}

    def cmd_server_status(self, body, db, conn_id):
        return {"host": socket.gethostname(), "version": f"{SERVER_VERSION}.0",
                "process": "mongo-standin",
                "uptime": float(time.time() - self.started),
                "connections": {"current": len(CONNECTIONS)}}

    def cmd_get_parameter(self, body, db, conn_id):
        reply = {}
        if body.get("featureCompatibilityVersion") or body.get("getParameter") == "*":
            reply["featureCompatibilityVersion"] = {"version": SERVER_VERSION}
        return reply

    def cmd_auth(self, body, db, conn_id):
        raise CommandError(18, "the MongoDB stand-in does not implement authentication",
                           codeName="AuthenticationFailed")

    # -- reads ---------------------------------------------------------------------------------

    def cmd_find(self, body, db, conn_id):
        name = self.coll_name(body, "find")
        self.reject(body, "collation", "let", "min", "max", "returnKey", "showRecordId",
                    "tailable", "awaitData", "allowPartialResults")
        filt = body.get("filter") or {}
        if not isinstance(filt, dict):
            raise CommandError(14, "filter must be a document")
        projection = body.get("projection") or None
        skip = int(body.get("skip") or 0)
        limit = int(body.get("limit") or 0)
        single = bool(body.get("singleBatch"))
        if skip < 0:
            raise CommandError(2, "skip must be non-negative")
        if limit < 0:
            raise CommandError(2, "limit must be non-negative")
        batch = body.get("batchSize")
        docs = list(self.client[db][name].find(
            filt, projection, skip=skip, limit=limit, sort=self.sort_list(body.get("sort"))))
        if limit and (batch is None or batch > limit):
            batch = limit
        return {"cursor": self.new_cursor(f"{db}.{name}", docs, batch, single)}

    def cmd_get_more(self, body, db, conn_id):
        cid = body.get("getMore")
        coll = body.get("collection")
        cur = self.cursors.get(int(cid)) if isinstance(cid, int) else None
        if cur is None:
            raise CommandError(43, f"cursor id {cid} not found")
        if cur.ns != f"{db}.{coll}":
            raise CommandError(13, f"Requested getMore on namespace '{db}.{coll}', but cursor "
                                   f"belongs to a different namespace {cur.ns}",
                               codeName="Unauthorized")
        batch, end = take_batch(cur.docs, cur.pos, int(body.get("batchSize") or 0))
        cur.pos = end
        cur.used = time.monotonic()
        if end >= len(cur.docs):
            del self.cursors[int(cid)]
            cid = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cid), "ns": cur.ns}}

    def cmd_kill_cursors(self, body, db, conn_id):
        killed, missing = [], []
        for cid in body.get("cursors") or []:
            if self.cursors.pop(int(cid), None) is not None:
                killed.append(Int64(cid))
            else:
                missing.append(Int64(cid))
        return {"cursorsKilled": killed, "cursorsNotFound": missing,
                "cursorsAlive": [], "cursorsUnknown": []}

    def cmd_aggregate(self, body, db, conn_id):
        target = body.get("aggregate")
        if target == 1:
            raise CommandError(238, "the MongoDB stand-in does not implement database-level "
                                    "aggregate")
        name = self.coll_name(body, "aggregate")
        self.reject(body, "collation", "let", "explain")
        pipeline = body.get("pipeline")
        if not isinstance(pipeline, list):
            raise CommandError(14, "'pipeline' must be an array")
        cursor = body.get("cursor")
        if not isinstance(cursor, dict):
            raise CommandError(9, "The 'cursor' option is required, except for aggregate "
                                  "with the explain argument")
        docs = list(self.client[db][name].aggregate(pipeline))
        return {"cursor": self.new_cursor(f"{db}.{name}", docs, cursor.get("batchSize"))}

    def cmd_count(self, body, db, conn_id):
        name = self.coll_name(body, "count")
        self.reject(body, "collation", "hint")
        query = body.get("query") or {}
        skip = int(body.get("skip") or 0)
        limit = abs(int(body.get("limit") or 0))
        n = len(list(self.client[db][name].find(query, {"_id": 1}, skip=skip, limit=limit)))
        return {"n": n}

    def cmd_distinct(self, body, db, conn_id):
        name = self.coll_name(body, "distinct")
        self.reject(body, "collation")
        key = body.get("key")
        if not isinstance(key, str):
            raise CommandError(14, "'key' must be a string")
        return {"values": self.client[db][name].distinct(key, body.get("query") or {})}

    # -- writes --------------------------------------------------------------------------------

    def cmd_insert(self, body, db, conn_id, throttle_from=None):
        name = self.coll_name(body, "insert")
        docs = body.get("documents")
        if not isinstance(docs, list):
            raise CommandError(14, "'documents' must be an array")
        if len(docs) > MAX_WRITE_BATCH_SIZE:
            raise CommandError(16, "Write batch sizes must be between 1 and 100000",
                               codeName="InvalidLength")
        ordered = body.get("ordered", True)
        coll = self.client[db][name]
        ns = f"{db}.{name}"
        n = 0
        errors = []
        for i, doc in enumerate(docs):
            try:
                if throttle_from is not None and i >= throttle_from:
                    raise throttled_error()
                if not isinstance(doc, dict):
                    raise CommandError(14, "a document to insert must be a document")
                for k in doc:
                    if k.startswith("$"):
                        raise CommandError(2, f"Document can't have $ prefixed field names: {k}")
                coll.insert_one(doc)
                n += 1
            except (DuplicateKeyError, OperationFailure, CommandError) as e:
                errors.append(self.write_error(i, e, ns, doc if isinstance(doc, dict) else None))
                if ordered:
                    break
        reply = {"n": n}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def cmd_update(self, body, db, conn_id):
        name = self.coll_name(body, "update")
        stmts = body.get("updates")
        if not isinstance(stmts, list):
            raise CommandError(14, "'updates' must be an array")
        ordered = body.get("ordered", True)
        coll = self.client[db][name]
        ns = f"{db}.{name}"
        n = modified = 0
        upserted = []
        errors = []
        for i, st in enumerate(stmts):
            try:
                self.reject(st, "collation", "c", "sort")
                q = st.get("q")
                u = st.get("u")
                if not isinstance(q, dict):
                    raise CommandError(14, "'q' must be a document")
                multi = bool(st.get("multi"))
                upsert = bool(st.get("upsert"))
                kind = self.check_update(u, multi)
                if kind == "replacement":
                    res = coll.replace_one(q, u, upsert=upsert)
                elif multi:
                    res = coll.update_many(q, u, upsert=upsert,
                                           array_filters=st.get("arrayFilters"))
                else:
                    res = coll.update_one(q, u, upsert=upsert,
                                          array_filters=st.get("arrayFilters"))
                raw = res.raw_result
                if raw.get("upserted") is not None and not raw.get("updatedExisting"):
                    upserted.append({"index": i, "_id": raw["upserted"]})
                    n += 1
                else:
                    n += raw.get("n", 0)
                    modified += raw.get("nModified", 0)
            except (DuplicateKeyError, OperationFailure, CommandError) as e:
                errors.append(self.write_error(i, e, ns))
                if ordered:
                    break
        reply = {"n": n, "nModified": modified}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    def cmd_delete(self, body, db, conn_id):
        name = self.coll_name(body, "delete")
        stmts = body.get("deletes")
        if not isinstance(stmts, list):
            raise CommandError(14, "'deletes' must be an array")
        ordered = body.get("ordered", True)
        coll = self.client[db][name]
        ns = f"{db}.{name}"
        n = 0
        errors = []
        for i, st in enumerate(stmts):
            try:
                self.reject(st, "collation")
                q = st.get("q")
                if not isinstance(q, dict):
                    raise CommandError(14, "'q' must be a document")
                limit = st.get("limit", 0)
                if limit not in (0, 1):
                    raise CommandError(9, "The limit field in delete objects must be 0 or 1")
                res = coll.delete_one(q) if limit == 1 else coll.delete_many(q)
                n += res.deleted_count
            except (OperationFailure, CommandError) as e:
                errors.append(self.write_error(i, e, ns))
                if ordered:
                    break
        reply = {"n": n}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def cmd_find_and_modify(self, body, db, conn_id):
        cmd = next(iter(body))
        name = self.coll_name(body, cmd)
        self.reject(body, "collation", "let")
        coll = self.client[db][name]
        query = body.get("query") or {}
        sort = self.sort_list(body.get("sort"))
        fields = body.get("fields") or None
        remove = bool(body.get("remove"))
        update = body.get("update")
        new = bool(body.get("new"))
        upsert = bool(body.get("upsert"))
        if remove and (update is not None or new or upsert):
            raise CommandError(9, "Cannot specify 'remove' with 'update', 'new' or 'upsert'")
        if not remove and update is None:
            raise CommandError(9, "Either an update or remove=true must be specified")
        existing = coll.find_one(query, sort=sort)
        if remove:
            if existing is None:
                return {"lastErrorObject": {"n": 0}, "value": None}
            value = coll.find_one({"_id": existing["_id"]}, fields)
            coll.delete_one({"_id": existing["_id"]})
            return {"lastErrorObject": {"n": 1}, "value": value}
        kind = self.check_update(update, False)
        array_filters = body.get("arrayFilters")

        def write(filt, ups):
            if kind == "replacement":
                return coll.replace_one(filt, update, upsert=ups)
            return coll.update_one(filt, update, upsert=ups, array_filters=array_filters)

        if existing is not None:
            before = coll.find_one({"_id": existing["_id"]}, fields)
            write({"_id": existing["_id"]}, False)
            value = coll.find_one({"_id": existing["_id"]}, fields) if new else before
            return {"lastErrorObject": {"n": 1, "updatedExisting": True}, "value": value}
        if not upsert:
            return {"lastErrorObject": {"n": 0, "updatedExisting": False}, "value": None}
        uid = write(query, True).upserted_id
        value = coll.find_one({"_id": uid}, fields) if new else None
        return {"lastErrorObject": {"n": 1, "updatedExisting": False, "upserted": uid},
                "value": value}

    # -- collections, databases, indexes -------------------------------------------------------

    def cmd_create(self, body, db, conn_id):
        name = self.coll_name(body, "create")
        self.reject(body, "capped", "timeseries", "validator", "viewOn", "clusteredIndex",
                    "collation", "changeStreamPreAndPostImages")
        if self.exists(db, name):
            raise CommandError(48, f"Collection {db}.{name} already exists.")
        self.client[db].create_collection(name)
        return {}

    def cmd_drop(self, body, db, conn_id):
        name = self.coll_name(body, "drop")
        ns = f"{db}.{name}"
        if not self.exists(db, name):
            # MongoDB >= 7.0 answers ok for a missing collection; drivers accept both.
            return {}
        n = len(self.client[db][name].index_information())
        self.client[db].drop_collection(name)
        self.kill_cursors_of(lambda cns: cns == ns)
        return {"ns": ns, "nIndexesWas": n}

    def cmd_drop_database(self, body, db, conn_id):
        self.client.drop_database(db)
        self.kill_cursors_of(lambda cns: cns.split(".", 1)[0] == db)
        return {"dropped": db}

    def kill_cursors_of(self, pred):
        for cid in [c for c, cur in self.cursors.items() if pred(cur.ns)]:
            del self.cursors[cid]

    def cmd_list_collections(self, body, db, conn_id):
        filt = body.get("filter") or {}
        name_only = bool(body.get("nameOnly"))
        docs = []
        for name in sorted(self.client[db].list_collection_names()):
            if name_only:
                d = {"name": name, "type": "collection"}
            else:
                d = {"name": name, "type": "collection", "options": {},
                     "info": {"readOnly": False},
                     "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_"}}
            if filtering.filter_applies(filt, d):
                docs.append(d)
        cursor = body.get("cursor") or {}
        return {"cursor": self.new_cursor(f"{db}.$cmd.listCollections", docs,
                                          cursor.get("batchSize"))}

    def cmd_list_databases(self, body, db, conn_id):
        filt = body.get("filter") or {}
        dbs = []
        for name in sorted(self.client.list_database_names()):
            d = {"name": name} if body.get("nameOnly") else \
                {"name": name, "sizeOnDisk": 0, "empty": False}
            if filtering.filter_applies(filt, d):
                dbs.append(d)
        reply = {"databases": dbs}
        if not body.get("nameOnly"):
            reply["totalSize"] = 0
        return reply

    @staticmethod
    def index_docs(coll):
        out = []
        for name, info in coll.index_information().items():
            d = {"v": 2, "key": dict(info["key"]), "name": name}
            for opt in ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression"):
                if opt in info:
                    d[opt] = info[opt]
            out.append(d)
        return out

    def cmd_list_indexes(self, body, db, conn_id):
        name = self.coll_name(body, "listIndexes")
        if not self.exists(db, name):
            raise CommandError(26, f"ns does not exist: {db}.{name}")
        docs = self.index_docs(self.client[db][name])
        cursor = body.get("cursor") or {}
        return {"cursor": self.new_cursor(f"{db}.{name}", docs, cursor.get("batchSize"))}

    def cmd_create_indexes(self, body, db, conn_id):
        name = self.coll_name(body, "createIndexes")
        specs = body.get("indexes")
        if not isinstance(specs, list) or not specs:
            raise CommandError(2, "Must specify at least one index to create")
        created = not self.exists(db, name)
        coll = self.client[db][name]
        if created:
            self.client[db].create_collection(name)
        before = self.index_docs(coll)
        known = {d["name"]: d for d in before}
        for spec in specs:
            key = spec.get("key")
            iname = spec.get("name")
            if not isinstance(key, dict) or not key:
                raise CommandError(67, "index 'key' must be a non-empty document")
            if not isinstance(iname, str) or not iname:
                raise CommandError(9, "index 'name' must be a non-empty string")
            for k, v in key.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v == 0:
                    raise CommandError(238, f"the MongoDB stand-in implements only ascending/"
                                            f"descending indexes, not {k}: {v!r}")
            for opt in spec:
                if opt not in ("key", "name", "unique", "sparse", "expireAfterSeconds",
                               "partialFilterExpression", "background", "v"):
                    raise CommandError(238, f"the MongoDB stand-in does not implement index "
                                            f"option '{opt}'")
            key_list = [(k, 1 if v > 0 else -1) for k, v in key.items()]
            want = {"v": 2, "key": dict(key_list), "name": iname}
            for opt in ("unique", "sparse"):
                if spec.get(opt):
                    want[opt] = True
            for opt in ("expireAfterSeconds", "partialFilterExpression"):
                if spec.get(opt) is not None:
                    want[opt] = spec[opt]
            same_name = known.get(iname)
            if same_name is not None:
                if list(same_name["key"].items()) != key_list:
                    raise CommandError(86, f"An existing index has the same name as the requested "
                                           f"index but a different key: {iname}")
                if same_name != want:
                    raise CommandError(85, f"An existing index has the same name as the requested "
                                           f"index but different options: {iname}")
                continue
            for other in known.values():
                if list(other["key"].items()) == key_list and \
                        other.get("partialFilterExpression") == want.get("partialFilterExpression"):
                    raise CommandError(85, f"Index already exists with a different name: "
                                           f"{other['name']}")
            kwargs = {k: want[k] for k in ("unique", "sparse", "expireAfterSeconds",
                                           "partialFilterExpression") if k in want}
            try:
                coll.create_index(key_list, name=iname, **kwargs)
            except DuplicateKeyError as e:
                raise CommandError(11000, f"E11000 duplicate key error collection: {db}.{name} "
                                          f"index: {iname} ({e})")
            known[iname] = want
        reply = {"createdCollectionAutomatically": created,
                 "numIndexesBefore": len(before), "numIndexesAfter": len(known)}
        if len(known) == len(before):
            reply["note"] = "all indexes already exist"
        return reply

    def cmd_drop_indexes(self, body, db, conn_id):
        cmd = next(iter(body))
        name = self.coll_name(body, cmd)
        if not self.exists(db, name):
            raise CommandError(26, f"ns not found {db}.{name}")
        coll = self.client[db][name]
        which = body.get("index")
        before = len(coll.index_information())
        if which == "*":
            coll.drop_indexes()
            return {"nIndexesWas": before}
        names = which if isinstance(which, list) else [which]
        for w in names:
            if isinstance(w, dict):
                match = [d["name"] for d in self.index_docs(coll) if d["key"] == w]
                if not match:
                    raise CommandError(27, f"can't find index with key: {w}",
                                       codeName="IndexNotFound")
                w = match[0]
            if w == "_id_":
                raise CommandError(72, "cannot drop _id index")
            if w not in coll.index_information():
                raise CommandError(27, f"index not found with name [{w}]",
                                   codeName="IndexNotFound")
            coll.drop_index(w)
        return {"nIndexesWas": before}


COMMANDS = {
    "hello": Engine.cmd_hello,
    "isMaster": Engine.cmd_hello,
    "ismaster": Engine.cmd_hello,
    "ping": Engine.cmd_ping,
    "buildInfo": Engine.cmd_build_info,
    "buildinfo": Engine.cmd_build_info,
    "endSessions": Engine.cmd_noop_sessions,
    "killSessions": Engine.cmd_noop_sessions,
    "killAllSessions": Engine.cmd_noop_sessions,
    "refreshSessions": Engine.cmd_noop_sessions,
    "whatsmyuri": Engine.cmd_whatsmyuri,
    "connectionStatus": Engine.cmd_connection_status,
    "serverStatus": Engine.cmd_server_status,
    "getParameter": Engine.cmd_get_parameter,
    "saslStart": Engine.cmd_auth,
    "authenticate": Engine.cmd_auth,
    "find": Engine.cmd_find,
    "getMore": Engine.cmd_get_more,
    "killCursors": Engine.cmd_kill_cursors,
    "aggregate": Engine.cmd_aggregate,
    "count": Engine.cmd_count,
    "distinct": Engine.cmd_distinct,
    "insert": Engine.cmd_insert,
    "update": Engine.cmd_update,
    "delete": Engine.cmd_delete,
    "findAndModify": Engine.cmd_find_and_modify,
    "findandmodify": Engine.cmd_find_and_modify,
    "create": Engine.cmd_create,
    "drop": Engine.cmd_drop,
    "dropDatabase": Engine.cmd_drop_database,
    "listCollections": Engine.cmd_list_collections,
    "listDatabases": Engine.cmd_list_databases,
    "listIndexes": Engine.cmd_list_indexes,
    "createIndexes": Engine.cmd_create_indexes,
    "dropIndexes": Engine.cmd_drop_indexes,
    "deleteIndexes": Engine.cmd_drop_indexes,
}

def throttled_error():
    """Cosmos DB's "request rate is large" answer (what --throttle-every injects)."""
    return CommandError(
        16500, "Error=16500, RetryAfterMs=5, Details='Response status code does not indicate "
               "success: TooManyRequests (429); Request rate is large' (injected by the MongoDB "
               "stand-in's --throttle-every)",
        codeName="TooManyRequests")


# What --throttle-every may fail: the data commands (not handshake, sessions or drops).
THROTTLED_COMMANDS = {
    "find", "getMore", "aggregate", "count", "distinct", "insert", "update", "delete",
    "findAndModify", "findandmodify", "createIndexes",
}


# ---------------------------------------------------------------------------------------------
# Wire protocol

HEADER = struct.Struct("<iiii")
CONNECTIONS = set()
_conn_ids = itertools.count(1)
_request_ids = itertools.count(1)
_ids_lock = threading.Lock()


def next_request_id():
    with _ids_lock:
        return next(_request_ids) & 0x7FFFFFFF


def decode_doc(data, where):
    try:
        return bson.decode(data, codec_options=CODEC)
    except Exception as e:  # noqa: BLE001
        raise ProtocolError(f"invalid BSON in {where}: {e}") from e


def cstring(data, pos):
    end = data.index(b"\x00", pos)
    return data[pos:end].decode("utf-8"), end + 1


def parse_op_msg(payload):
    """(flagBits, command document with kind-1 sequences merged in)."""
    if len(payload) < 5:
        raise ProtocolError("OP_MSG too short")
    (flags,) = struct.unpack_from("<I", payload, 0)
    unknown_required = flags & 0xFFFF & ~KNOWN_REQUIRED_FLAGS
    if unknown_required:
        raise ProtocolError(f"OP_MSG with unknown required flag bits {unknown_required:#x}")
    end = len(payload)
    if flags & FLAG_CHECKSUM:
        end -= 4
    pos = 4
    body = None
    sequences = {}
    while pos < end:
        kind = payload[pos]
        pos += 1
        if kind == 0:
            (size,) = struct.unpack_from("<i", payload, pos)
            if body is not None:
                raise ProtocolError("OP_MSG with two body sections")
            body = decode_doc(payload[pos:pos + size], "OP_MSG body")
            pos += size
        elif kind == 1:
            (size,) = struct.unpack_from("<i", payload, pos)
            sec_end = pos + size
            ident, p = cstring(payload, pos + 4)
            docs = []
            while p < sec_end:
                (dsize,) = struct.unpack_from("<i", payload, p)
                docs.append(decode_doc(payload[p:p + dsize], f"document sequence {ident}"))
                p += dsize
            if p != sec_end:
                raise ProtocolError(f"document sequence {ident} overruns its section")
            sequences.setdefault(ident, []).extend(docs)
            pos = sec_end
        else:
            raise ProtocolError(f"OP_MSG section of unknown kind {kind}")
    if pos != end:
        raise ProtocolError("OP_MSG sections overrun the message")
    if body is None:
        raise ProtocolError("OP_MSG without a body section")
    for ident, docs in sequences.items():
        if ident in body:
            raise ProtocolError(f"OP_MSG field {ident} both in the body and a sequence")
        body[ident] = docs
    return flags, body


def op_msg_reply(response_to, doc):
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(doc, codec_options=CODEC)
    return HEADER.pack(16 + len(payload), next_request_id(), response_to, OP_MSG) + payload


def op_reply(response_to, doc, flags=0):
    docs = bson.encode(doc, codec_options=CODEC)
    payload = struct.pack("<iqii", flags, 0, 0, 1) + docs
    return HEADER.pack(16 + len(payload), next_request_id(), response_to, OP_REPLY) + payload


class Handler(socketserver.BaseRequestHandler):
    """One client connection: read a message, run it, answer, repeat."""

    def setup(self):
        with _ids_lock:
            self.conn_id = next(_conn_ids)
        CONNECTIONS.add(self.conn_id)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log(f"conn{self.conn_id} open from {self.client_address[0]}:{self.client_address[1]}")

    def finish(self):
        CONNECTIONS.discard(self.conn_id)
        log(f"conn{self.conn_id} closed")

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf.extend(chunk)
        return bytes(buf)

    def handle(self):
        try:
            self.serve()
        except OSError as e:  # the client went away mid-message: just drop the connection
            log(f"conn{self.conn_id}: {e!r}")

    def serve(self):
        engine = self.server.engine
        while True:
            header = self.recv_exact(16)
            if header is None:
                return
            length, request_id, _response_to, opcode = HEADER.unpack(header)
            if length < 16 or length > MAX_MESSAGE_SIZE:
                warn(f"conn{self.conn_id}: message length {length} out of range; closing")
                return
            payload = self.recv_exact(length - 16)
            if payload is None:
                return
            try:
                reply = self.dispatch(engine, header, request_id, opcode, payload)
            except ProtocolError as e:
                warn(f"conn{self.conn_id}: protocol error: {e}; closing")
                return
            if reply is not None:
                self.request.sendall(reply)

    def dispatch(self, engine, header, request_id, opcode, payload):
        if opcode == OP_MSG:
            flags, body = parse_op_msg(payload)
            if flags & FLAG_CHECKSUM:
                (want,) = struct.unpack_from("<I", payload, len(payload) - 4)
                if crc32c(header + payload[:-4]) != want:
                    raise ProtocolError("OP_MSG checksum mismatch")
            result = engine.run(body, self.conn_id)
            if flags & FLAG_MORE_TO_COME:
                return None  # unacknowledged (w: 0): the client expects no answer
            return op_msg_reply(request_id, result)
        if opcode == OP_QUERY:
            (_flags,) = struct.unpack_from("<i", payload, 0)
            ns, pos = cstring(payload, 4)
            pos += 8  # numberToSkip, numberToReturn
            (size,) = struct.unpack_from("<i", payload, pos)
            query = decode_doc(payload[pos:pos + size], "OP_QUERY")
            if not ns.endswith(".$cmd"):
                return op_reply(request_id, {"$err": "the MongoDB stand-in answers OP_QUERY only "
                                                     "for commands (<db>.$cmd)", "code": 238},
                                flags=2)
            if "$query" in query:
                query = query["$query"]
            query = dict(query)
            query["$db"] = ns[: -len(".$cmd")]
            return op_reply(request_id, engine.run(query, self.conn_id, via="OP_QUERY"))
        if opcode == OP_COMPRESSED:
            raise ProtocolError("OP_COMPRESSED received, but no compressor was offered")
        raise ProtocolError(f"unsupported opcode {opcode}")


class Server(socketserver.ThreadingTCPServer):
    """Threaded TCP server sharing one Engine."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, engine):
        super().__init__(addr, Handler)
        self.engine = engine


def main(argv=None):
    global LOG_QUIET, SERVER_VERSION, MAX_WIRE_VERSION
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=27017, help="port (0 picks a free one)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--quiet", action="store_true",
                    default=os.environ.get("MONGO_STANDIN_QUIET") == "1",
                    help="do not log every command (also MONGO_STANDIN_QUIET=1)")
    ap.add_argument("--throttle-every", type=int, default=0, metavar="N",
                    help="fail every Nth data command with Cosmos DB's throttling error 16500 "
                         "(RetryAfterMs=5), to test retry paths; 0 = never (default)")
    ap.add_argument("--server-version", default=SERVER_VERSION, choices=sorted(WIRE_VERSIONS),
                    help="MongoDB (or Cosmos DB serverVersion) release to answer hello as: its "
                         "maxWireVersion and buildInfo version (default %(default)s); e.g. 4.2 "
                         "answers wire version 8, which the Rust driver refuses")
    args = ap.parse_args(argv)
    SERVER_VERSION = args.server_version
    MAX_WIRE_VERSION = WIRE_VERSIONS[SERVER_VERSION]
    if args.throttle_every < 0:
        ap.error("--throttle-every must be >= 0")
    LOG_QUIET = args.quiet
    server = Server((args.host, args.port), Engine(args.throttle_every))
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    warn(f"listening on {args.host}:{port} (pymongo {pymongo.version}, "
         f"mongomock {mongomock.__version__}, pid {os.getpid()})")
    # The one stdout line, for a parent that starts this with --port 0 and reads where it
    # listens (tests/tests/mongo_store.rs takes the last word): "... listening on HOST:PORT".
    print(f"mongo stand-in listening on {args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
