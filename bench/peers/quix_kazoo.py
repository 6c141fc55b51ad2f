"""The benchmark's peer: zkflow's mapping as a Quix Streams application.

Consumes TOPIC from the beginning with its own consumer group, decodes each
record's JSON value, and writes /bench/devices/<id> with a re-encoded subset
of its fields, the mapping of bench/devices.lua. A kazoo-based batching sink
writes each checkpoint's records as ZooKeeper transactions of at most
--ops-per-txn set ops; Quix commits the Kafka offsets after every
--ops-per-txn records, once the sink has flushed. Stops after --count records.

    python quix_kazoo.py --topic T --count N [--broker B] [--zookeeper Z]
                         [--group G] [--ops-per-txn 100]

Prints one line at the end: records=... written=... transactions=...
(bench/run.sh times the whole process).
"""
import argparse
import json
import logging
import sys
import time
import warnings

# quixstreams imports authlib's httpx integration, which warns that it is
# deprecated; authlib's own "always" filter for that warning comes first
# unless this one is added after it.
try:
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
except ImportError:
    pass

from kazoo.client import KazooClient
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch


class KazooTransactionSink(BatchingSink):
    """Writes (path, data) values as kazoo transactions of set ops."""

    def __init__(self, hosts: str, ops_per_txn: int):
        super().__init__()
        self._hosts = hosts
        self._ops_per_txn = ops_per_txn
        self._zk = None
        self.written = 0
        self.transactions = 0

    def setup(self):
        self._zk = KazooClient(hosts=self._hosts)
        self._zk.start(timeout=15)

    def write(self, batch: SinkBatch):
        for chunk in batch.iter_chunks(n=self._ops_per_txn):
            txn = self._zk.transaction()
            for item in chunk:
                path, data = item.value
                txn.set_data(path, data)
            for result in txn.commit():
                if isinstance(result, Exception):
                    raise result
            self.written += len(chunk)
            self.transactions += 1

    def close(self):
        if self._zk is not None:
            self._zk.stop()
            self._zk.close()


def to_op(ev):
    data = {"status": ev["status"], "site": ev["site"], "seq": ev["seq"], "fw": ev["fw"]}
    return "/bench/devices/" + ev["id"], json.dumps(data, separators=(",", ":")).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, required=True, help="records to process, then stop")
    ap.add_argument("--broker", default="127.0.0.1:9092")
    ap.add_argument("--zookeeper", default="127.0.0.1:2181")
    ap.add_argument("--group", default="quix-kazoo-bench-%d" % time.time())
    ap.add_argument("--ops-per-txn", type=int, default=100)
    args = ap.parse_args()

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_every=args.ops_per_txn,
        auto_create_topics=False,
        use_changelog_topics=False,
        loglevel="WARNING",
    )
    sink = KazooTransactionSink(args.zookeeper, args.ops_per_txn)
    sdf = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    sdf = sdf.apply(to_op)
    sdf.sink(sink)
    try:
        app.run(count=args.count, collect=False)
    finally:
        sink.close()
    print("records=%d written=%d transactions=%d" % (args.count, sink.written, sink.transactions))
    if sink.written < args.count:
        print("quix_kazoo: wrote %d records, expected %d" % (sink.written, args.count), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    sys.exit(main())
