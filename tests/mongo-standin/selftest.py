#!/usr/bin/env python3
"""Self-test of the MongoDB stand-in: a real server on a free port, driven by pymongo and by
hand-built wire messages (checksums, document sequences, OP_QUERY, moreToCome, bad input).

Why: the Rust conformance suite only exercises what the store uses today; these checks pin
the protocol and the semantics the stand-in promises in README.md (cursors, unique indexes,
error shapes) so a change to server.py cannot quietly break them.

Run: bash start.sh --selftest   (or python3 selftest.py with requirements.txt installed);
ends with the line "selftest: N passed, N failed" and exits non-zero on any failure.
"""

import os
import socket
import struct
import sys
import threading
import unittest

import bson
import pymongo
from bson.int64 import Int64
from pymongo import ReturnDocument, WriteConcern
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402

server.LOG_QUIET = True


class StandIn(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = server.Server(("127.0.0.1", 0), server.Engine())
        cls.port = cls.srv.server_address[1]
        cls.thread = threading.Thread(target=cls.srv.serve_forever, daemon=True)
        cls.thread.start()
        cls.client = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{cls.port}/?directConnection=true",
            serverSelectionTimeoutMS=5000)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.srv.shutdown()
        cls.srv.server_close()

    def setUp(self):
        self.db = self.client[f"selftest_{self._testMethodName}"]

    def tearDown(self):
        self.client.drop_database(self.db.name)

    # -- wire-level helpers -----------------------------------------------------------------

    def raw(self, opcode, payload, request_id=7):
        msg = struct.pack("<iiii", 16 + len(payload), request_id, 0, opcode) + payload
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(msg)
            header = self.recv(s, 16)
            if header is None:
                return None
            length, _rid, response_to, op = struct.unpack("<iiii", header)
            self.assertEqual(response_to, request_id)
            return op, self.recv(s, length - 16)

    @staticmethod
    def recv(s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def op_msg(self, body, sequences=(), checksum=False, flags=0):
        payload = struct.pack("<I", flags | (1 if checksum else 0)) + b"\x00" + bson.encode(body)
        for ident, docs in sequences:
            data = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
            payload += b"\x01" + struct.pack("<i", 4 + len(data)) + data
        if checksum:
            header = struct.pack("<iiii", 16 + len(payload) + 4, 7, 0, 2013)
            payload += struct.pack("<I", server.crc32c(header + payload))
        return payload

    def reply_doc(self, answer):
        op, payload = answer
        self.assertEqual(op, 2013)
        self.assertEqual(payload[4], 0)
        return bson.decode(payload[5:])

    # -- protocol ---------------------------------------------------------------------------

    def test_crc32c_known_vector(self):
        self.assertEqual(server.crc32c(b"123456789"), 0xE3069283)

    def test_op_msg_with_sequences_and_checksum(self):
        body = {"insert": "t", "$db": self.db.name, "ordered": True}
        docs = [{"_id": i} for i in range(3)]
        got = self.reply_doc(self.raw(2013, self.op_msg(body, [("documents", docs)], True)))
        self.assertEqual((got["ok"], got["n"]), (1.0, 3))
        self.assertEqual(self.db.t.count_documents({}), 3)

    def test_bad_checksum_closes_the_connection(self):
        payload = bytearray(self.op_msg({"ping": 1, "$db": "admin"}, checksum=True))
        payload[-1] ^= 0xFF
        self.assertIsNone(self.raw(2013, bytes(payload)))

    def test_unknown_required_flag_closes_the_connection(self):
        self.assertIsNone(self.raw(2013, self.op_msg({"ping": 1, "$db": "admin"}, flags=1 << 5)))

    def test_more_to_come_gets_no_reply_but_is_applied(self):
        self.db.t.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": 1})
        self.assertEqual(self.db.t.find_one({"_id": 1}), {"_id": 1})

    def test_legacy_op_query_handshake(self):
        q = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1)
        q += bson.encode({"isMaster": 1, "helloOk": True})
        op, payload = self.raw(2004, q)
        self.assertEqual(op, 1)
        _flags, cursor_id, _start, n = struct.unpack_from("<iqii", payload)
        self.assertEqual((cursor_id, n), (0, 1))
        doc = bson.decode(payload[20:])
        self.assertTrue(doc["ismaster"])
        self.assertTrue(doc["helloOk"])
        self.assertEqual(doc["maxWireVersion"], server.MAX_WIRE_VERSION)

    def test_hello_describes_a_writable_standalone(self):
        hello = self.client.admin.command("hello")
        self.assertTrue(hello["isWritablePrimary"])
        self.assertNotIn("topologyVersion", hello)
        self.assertNotIn("setName", hello)
        self.assertGreater(hello["connectionId"], 0)

    def test_errors_have_mongodb_shape(self):
        with self.assertRaises(OperationFailure) as e:
            self.db.command("frobnicate")
        self.assertEqual(e.exception.code, 59)
        self.assertEqual(e.exception.details["codeName"], "CommandNotFound")
        self.assertEqual(e.exception.details["ok"], 0)

    # -- semantics --------------------------------------------------------------------------

    def test_cursors_page_with_get_more_and_die_with_kill_cursors(self):
        self.db.t.insert_many([{"_id": i} for i in range(250)])
        got = [d["_id"] for d in self.db.t.find({"_id": {"$lt": 240}}, sort=[("_id", -1)],
                                               batch_size=7)]
        self.assertEqual(got, list(range(239, -1, -1)))
        first = self.db.command("find", "t", batchSize=2)
        cid = first["cursor"]["id"]
        self.assertIsInstance(cid, Int64)
        self.assertNotEqual(cid, 0)
        killed = self.db.command("killCursors", "t", cursors=[cid])
        self.assertEqual(killed["cursorsKilled"], [cid])
        with self.assertRaises(OperationFailure) as e:
            self.db.command("getMore", cid, collection="t")
        self.assertEqual(e.exception.code, 43)

    def test_limit_skip_projection(self):
        self.db.t.insert_many([{"_id": i, "a": i, "b": -i} for i in range(10)])
        got = list(self.db.t.find({}, {"b": 0}, sort=[("a", 1)], skip=2, limit=3))
        self.assertEqual(got, [{"_id": 2, "a": 2}, {"_id": 3, "a": 3}, {"_id": 4, "a": 4}])
        self.assertEqual(self.db.t.count_documents({"a": {"$gte": 5}}), 5)
        self.assertEqual(self.db.t.estimated_document_count(), 10)

    def test_unique_indexes_are_enforced(self):
        self.db.t.create_index([("u", 1)], unique=True, name="u_1")
        self.db.t.insert_one({"_id": 1, "u": 1})
        with self.assertRaises(DuplicateKeyError):
            self.db.t.insert_one({"_id": 2, "u": 1})
        self.db.t.insert_one({"_id": 3, "u": 3})
        with self.assertRaises(DuplicateKeyError):
            self.db.t.update_one({"_id": 3}, {"$set": {"u": 1}})
        with self.assertRaises(DuplicateKeyError):
            self.db.t.replace_one({"_id": 4}, {"u": 3}, upsert=True)
        self.assertEqual(sorted(d["u"] for d in self.db.t.find()), [1, 3])
        self.db.k.insert_many([{"v": 1}, {"v": 1}])
        with self.assertRaises(OperationFailure) as e:
            self.db.k.create_index([("v", 1)], unique=True)
        self.assertEqual(e.exception.code, 11000)

    def test_unordered_insert_reports_each_duplicate_and_inserts_the_rest(self):
        self.db.t.insert_one({"_id": "a"})
        with self.assertRaises(BulkWriteError) as e:
            self.db.t.insert_many([{"_id": "a"}, {"_id": "b"}, {"_id": "a"}], ordered=False)
        d = e.exception.details
        self.assertEqual(d["nInserted"], 1)
        self.assertEqual([(w["index"], w["code"]) for w in d["writeErrors"]],
                         [(0, 11000), (2, 11000)])

    def test_index_conflicts_and_listing(self):
        self.db.t.create_index([("a", 1)], name="a")
        self.db.t.create_index([("a", 1)], name="a")  # same spec again: a no-op
        with self.assertRaises(OperationFailure) as e:
            self.db.t.create_index([("a", 1)], name="other")
        self.assertEqual(e.exception.code, 85)
        with self.assertRaises(OperationFailure) as e:
            self.db.t.create_index([("b", 1)], name="a")
        self.assertEqual(e.exception.code, 86)
        self.assertEqual([i["name"] for i in self.db.t.list_indexes()], ["_id_", "a"])
        self.db.t.drop_index("a")
        self.assertEqual([i["name"] for i in self.db.t.list_indexes()], ["_id_"])

    def test_find_and_modify_upsert_counter_stays_int64(self):
        for want in (3, 6):
            d = self.db.meta.find_one_and_update({"_id": "seq"}, {"$inc": {"n": Int64(3)}},
                                                 upsert=True,
                                                 return_document=ReturnDocument.AFTER)
            self.assertEqual(d["n"], want)
            self.assertIsInstance(d["n"], Int64)
        raw = self.db.command("findAndModify", "meta", query={"_id": "x"},
                              update={"$set": {"y": 1}}, upsert=True)
        self.assertIsNone(raw["value"])
        self.assertEqual(raw["lastErrorObject"], {"n": 1, "updatedExisting": False,
                                                  "upserted": "x"})

    def test_cas_replace_only_matches_the_revision_read(self):
        self.db.t.insert_one({"_id": "t", "rev": Int64(0)})
        r1 = self.db.t.replace_one({"_id": "t", "rev": 0}, {"_id": "t", "rev": Int64(1)})
        r2 = self.db.t.replace_one({"_id": "t", "rev": 0}, {"_id": "t", "rev": Int64(1)})
        self.assertEqual((r1.matched_count, r2.matched_count), (1, 0))

    def test_push_each_slice_and_group(self):
        for i in range(4):
            self.db.m.update_one({"_id": "x"}, {"$push": {"s": {"$each": [i, i], "$slice": -3}}},
                                 upsert=True)
        self.assertEqual(self.db.m.find_one()["s"], [2, 3, 3])
        self.db.t.insert_many([{"st": "a"}, {"st": "a"}, {"st": "b"}])
        got = {g["_id"]: g["n"] for g in
               self.db.t.aggregate([{"$group": {"_id": "$st", "n": {"$sum": 1}}}])}
        self.assertEqual(got, {"a": 2, "b": 1})

    def test_bad_updates_are_refused(self):
        self.db.t.insert_one({"_id": 1})
        with self.assertRaises(WriteError) as e:
            self.db.t.update_one({"_id": 1}, {"$frob": {"a": 1}})
        self.assertEqual(e.exception.code, 9)
        with self.assertRaises(WriteError) as e:
            self.db.t.replace_one({"_id": 1}, {"_id": 2})
        self.assertEqual(e.exception.code, 66)

    def test_transactions_are_refused(self):
        self.db.t.insert_one({"_id": 1})
        with self.assertRaises(OperationFailure) as e:
            self.db.command("find", "t", startTransaction=True, autocommit=False,
                            txnNumber=Int64(1))
        self.assertEqual(e.exception.code, 20)

    def test_throttle_injection_fails_every_nth_data_command_like_cosmos(self):
        engine = server.Engine(throttle_every=2)
        run = lambda body: engine.run(dict(body, **{"$db": "d"}), 1)  # noqa: E731
        self.assertEqual(run({"ping": 1})["ok"], 1.0)  # never throttled
        self.assertEqual(run({"insert": "t", "documents": [{"_id": 0}]})["n"], 1)
        err = run({"find": "t"})
        self.assertEqual((err["ok"], err["code"], err["codeName"]), (0.0, 16500, "TooManyRequests"))
        self.assertIn("RetryAfterMs=5", err["errmsg"])
        self.assertEqual(run({"find": "t"})["cursor"]["firstBatch"], [{"_id": 0}])
        part = run({"insert": "t", "ordered": False, "documents": [{"_id": i} for i in (1, 2, 3)]})
        self.assertEqual(part["n"], 2)
        self.assertEqual([(w["index"], w["code"]) for w in part["writeErrors"]], [(2, 16500)])

    def test_drop_and_list_collections(self):
        self.db.a.insert_one({})
        self.db.b.insert_one({})
        self.assertEqual(sorted(self.db.list_collection_names()), ["a", "b"])
        self.assertEqual(self.db.list_collection_names(filter={"name": "a"}), ["a"])
        self.db.a.drop()
        self.db.a.drop()  # a missing collection drops fine
        self.assertEqual(self.db.list_collection_names(), ["b"])
        self.client.drop_database(self.db.name)
        self.assertNotIn(self.db.name, self.client.list_database_names())


if __name__ == "__main__":
    result = unittest.main(verbosity=1, exit=False).result
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print(f"selftest: {result.testsRun - bad - len(result.skipped)} passed, {bad} failed")
    sys.exit(1 if bad or not result.testsRun else 0)
