"""Read a Redis stream or hashes over RESP for the event tests (test/saga).

    python3 redis_stream.py PORT stream KEY     one line per entry:
        <entry id> <event_id> <type> <aggregate> <aggregate_id> <occurred_at> <user_id or ->
    python3 redis_stream.py PORT hash KEY...    one line per key: <key> <field>=<value> ...

A test reads what the relay wrote without any client library: redis-cli's
output cannot tell an empty field from a missing one.
"""
import socket
import sys


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=30)
        self.f = self.sock.makefile("rb")

    def _line(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise SystemExit("redis closed the connection")
        return line[:-2]

    def _exact(self, n):
        data = self.f.read(n + 2)
        if len(data) != n + 2:
            raise SystemExit("redis closed the connection")
        return data[:n]

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise SystemExit("redis error: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise SystemExit("unexpected reply %r" % line)

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()


def main():
    r = Redis(sys.argv[1])
    if sys.argv[2] == "stream":
        start = "-"
        while True:
            entries = r.call("XRANGE", sys.argv[3], start, "+", "COUNT", 10000)
            if not entries:
                break
            for entry_id, fields in entries:
                f = dict(zip(fields[0::2], fields[1::2]))
                print(entry_id, f["event_id"], f["type"], f["aggregate"], f["aggregate_id"],
                      f["occurred_at"], f.get("user_id", "-"))
            start = "(" + entries[-1][0]
    else:
        for key in sys.argv[3:]:
            h = r.call("HGETALL", key) or []
            print(key, " ".join("%s=%s" % (k, v) for k, v in sorted(zip(h[0::2], h[1::2]))))


main()
