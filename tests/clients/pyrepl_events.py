"""Prints the events python-mysql-replication reads from a server, one JSON object a line.

Used by tests/tests/clients.rs to compare what the library reads from the real primary
and from binlog-server's fake primary. Events with log_pos 0 (made up by the server:
artificial ROTATE, re-sent FORMAT_DESCRIPTION, heartbeats) are left out, since servers
legitimately differ in them.

usage: pyrepl_events.py PORT SERVER_ID [--mysql] [--password=P] MODE [ARG]
  --mysql              is_mariadb=False (MySQL dialect; GTID_POS is then a MySQL GTID
                       set and the request COM_BINLOG_DUMP_GTID)
  --password=P         the replication password (default replpass)
  MODE position FILE   from FILE:4 (COM_BINLOG_DUMP), blocking=False
  MODE gtid GTID_POS   GTID auto_position (MariaDB: @slave_connect_state), blocking=False
  MODE rows            only_events = the row events, from the first binlog, blocking=False
  MODE follow FILE     from FILE:4, blocking=True (runs until it is stopped)
"""

import json
import sys

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import QueryEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent


def main():
    # Options may come anywhere; the rest are the positional arguments.
    args, mariadb, password = [], True, "replpass"
    for a in sys.argv[1:]:
        if a == "--mysql":
            mariadb = False
        elif a.startswith("--password="):
            password = a.split("=", 1)[1]
        elif a.startswith("--"):
            raise SystemExit(f"unknown option {a!r}")
        else:
            args.append(a)
    sys.argv = [sys.argv[0]] + args
    port, server_id, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    kw = dict(
        connection_settings=dict(host="127.0.0.1", port=port, user="repl", passwd=password),
        server_id=server_id,
        is_mariadb=mariadb,
        blocking=False,
        # Every event's CRC32 is checked by the library too.
        verify_checksum=True,
        # Row values that are not valid in their column's character set (RDS's fixture
        # has some) are decoded with replacement characters instead of ending the read.
        ignore_decode_errors=True,
    )
    if mode == "position":
        kw.update(log_file=sys.argv[4], log_pos=4, resume_stream=True)
    elif mode == "gtid":
        kw.update(auto_position=sys.argv[4])
    elif mode == "follow":
        kw.update(log_file=sys.argv[4], log_pos=4, resume_stream=True, blocking=True)
    elif mode == "rows":
        kw.update(only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    stream = BinLogStreamReader(**kw)
    try:
        for ev in stream:
            log_pos = ev.packet.log_pos
            if log_pos == 0:
                continue
            d = {"type": type(ev).__name__, "log_pos": log_pos}
            if isinstance(ev, QueryEvent):
                d["query"] = ev.query
            if isinstance(ev, XidEvent):
                d["xid"] = ev.xid
            rows = getattr(ev, "rows", None)
            if rows is not None:
                d["rows"] = [
                    {k: str(v) for k, v in sorted((r.get("values") or r.get("after_values") or {}).items())}
                    for r in rows
                ]
            print(json.dumps(d, sort_keys=True), flush=True)
    finally:
        stream.close()


if __name__ == "__main__":
    main()
