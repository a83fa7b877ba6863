#!/usr/bin/env python3
"""Deterministic data generators for bench/compare.sh.

Everything here is driven by a seeded PRNG so that every machine (and every
re-run) produces byte-identical datasets; only the standard library is used.

  datagen.py random FILE SIZE [--seed N]    incompressible bytes
  datagen.py text   FILE SIZE [--seed N]    log-like text (zstd -3: roughly 3-5x)
  datagen.py modify FILE --kind random|text [--seed N] [--fraction F]
        overwrite F (default 0.01) of FILE's bytes, one contiguous region
        centred in the middle of the file, in place (size unchanged)

SIZE accepts K/M/G (binary) suffixes, e.g. 2G, 200M.
"""

import argparse
import os
import random
import sys
import time

CHUNK = 1 << 20


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B").rstrip("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def random_stream(seed):
    rng = random.Random(seed)
    while True:
        yield rng.randbytes(CHUNK)


class LogText:
    """Produces log lines that look (and compress) like a real service log.

    Compressibility comes from what real logs share: a fixed timestamp
    layout, a handful of levels/components/routes, and a Zipf-distributed
    vocabulary in messages. What keeps the ratio realistic (not 1000x) is the
    per-line high-entropy content real logs also have: request ids, user ids,
    latencies, byte counts, IP addresses.
    """

    LEVELS = ["INFO"] * 14 + ["DEBUG"] * 4 + ["WARN"] * 2 + ["ERROR"]
    COMPONENTS = [
        "http.server", "http.client", "db.pool", "db.query", "cache", "auth",
        "scheduler", "worker", "queue.consumer", "queue.producer", "storage",
        "metrics", "gc", "config", "grpc", "mailer",
    ]
    METHODS = ["GET"] * 8 + ["POST"] * 3 + ["PUT", "DELETE", "PATCH"]
    ROUTES = [
        "/api/v1/items/{}", "/api/v1/users/{}", "/api/v1/orders/{}/lines",
        "/api/v2/search", "/api/v2/feed", "/healthz", "/static/app.{}.js",
        "/api/v1/sessions", "/api/v1/items/{}/reviews", "/login", "/logout",
    ]
    STATUSES = [200] * 30 + [201, 204, 301, 302, 304] + [400, 401, 403, 404] * 2 + [500, 502, 503]

    def __init__(self, seed):
        self.rng = random.Random(seed)
        rng = self.rng
        # A vocabulary of pronounceable pseudo-words with Zipfian frequencies:
        # a few words are very common, most are rare, as in natural text.
        consonants = "bcdfghjklmnprstvwz"
        vowels = "aeiou"
        vocab = set()
        while len(vocab) < 8000:
            n = rng.choice((1, 2, 2, 3, 3, 4))
            vocab.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n)))
        self.vocab = sorted(vocab)
        rng.shuffle(self.vocab)
        weights = [1.0 / (i + 1) for i in range(len(self.vocab))]
        acc, self.cum = 0.0, []
        for w in weights:
            acc += w
            self.cum.append(acc)
        self.ts = 1_700_000_000_000  # milliseconds since epoch

    def lines(self, count):
        rng = self.rng
        words = rng.choices(self.vocab, cum_weights=self.cum, k=count * 8)
        out = []
        wi = 0
        last_secs, prefix = None, ""
        for _ in range(count):
            self.ts += rng.randrange(0, 40)
            secs, ms = divmod(self.ts, 1000)
            if secs != last_secs:
                last_secs = secs
                prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
            level = rng.choice(self.LEVELS)
            comp = rng.choice(self.COMPONENTS)
            nwords = rng.randrange(3, 9)
            msg = " ".join(words[wi:wi + nwords])
            wi += nwords
            stamp = "%s.%03dZ" % (prefix, ms)
            if comp.startswith("http"):
                route = rng.choice(self.ROUTES).format(rng.randrange(1, 100000))
                out.append(
                    "%s %-5s [%s] req=%08x ip=10.%d.%d.%d %s %s status=%d bytes=%d dur_ms=%.1f msg=\"%s\"\n"
                    % (stamp, level, comp, rng.getrandbits(32), rng.randrange(256),
                       rng.randrange(256), rng.randrange(256), rng.choice(self.METHODS),
                       route, rng.choice(self.STATUSES), rng.randrange(100, 60000),
                       rng.expovariate(0.05), msg))
            else:
                out.append("%s %-5s [%s] user=u%d %s\n"
                           % (stamp, level, comp, rng.randrange(1, 50000), msg))
        return "".join(out).encode()


def text_stream(seed):
    gen = LogText(seed)
    while True:
        yield gen.lines(4096)


def write_stream(path, size, stream):
    tmp = path + ".partial"
    written = 0
    with open(tmp, "wb") as f:
        for chunk in stream:
            chunk = chunk[: size - written]
            f.write(chunk)
            written += len(chunk)
            if written >= size:
                break
    os.replace(tmp, path)


def take(stream, n):
    buf = bytearray()
    for chunk in stream:
        buf += chunk
        if len(buf) >= n:
            return bytes(buf[:n])
    raise AssertionError("unreachable: streams are infinite")


def modify(path, kind, seed, fraction):
    size = os.path.getsize(path)
    length = max(1, int(size * fraction))
    offset = max(0, size // 2 - length // 2)
    stream = random_stream(seed) if kind == "random" else text_stream(seed)
    data = take(stream, length)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
    print("modified %s: %d bytes at offset %d" % (path, length, offset), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("random", "text"):
        p = sub.add_parser(name)
        p.add_argument("file")
        p.add_argument("size", type=parse_size)
        p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("modify")
    p.add_argument("file")
    p.add_argument("--kind", choices=("random", "text"), required=True)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--fraction", type=float, default=0.01)
    args = ap.parse_args()

    if args.cmd == "random":
        write_stream(args.file, args.size, random_stream(args.seed))
    elif args.cmd == "text":
        write_stream(args.file, args.size, text_stream(args.seed))
    else:
        modify(args.file, args.kind, args.seed, args.fraction)


if __name__ == "__main__":
    main()
