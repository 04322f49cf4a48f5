"""The shared response-cache store in Redis: one gateway's entries, bounded per store.

Keys (the part in braces is a Redis Cluster hash tag: a store's keys share one slot, so the
store script touches one node):

    gatewayctl:cache:{<gateway>/<store>}:e:<sha256 of the cache key>   the entry (SET EX ttl)
    gatewayctl:cache:{<gateway>/<store>}:index    sorted set: entry digest -> expiry time
                                                  (seconds x 10^6 + a sequence number)
    gatewayctl:cache:{<gateway>/<store>}:seq      the sequence (order of entries stored
                                                  in one second)
    gatewayctl:cache:{<gateway>/<store>}:sizes    hash: entry digest -> bytes it counts
    gatewayctl:cache:{<gateway>/<store>}:bytes    the bytes the store's entries count

The gateway's name is the service's own (its `--gateway` flag), never the caller's: a gateway's
Envoys reach only their own service, so one gateway cannot read or fill another's entries in a
Redis they share. The cache key itself (route, endpoint, consumer, normalised body: no
credential) is only hashed; Redis holds its SHA-256, the answer and when it was stored.

An entry expires through Redis (`EX ttl`). The bound: a store's entries count their value,
their digest and ENTRY_OVERHEAD bytes; the store script (one atomic EVALSHA) first drops
entries whose time is up, then the entry it replaces, then the oldest entries (soonest to
expire) until the new one fits within the store's max bytes. The bound is this service's
accounting, not Redis's memory: Redis's own `maxmemory` policy stays the user's.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

from gatewayctl.local.resp import RedisClient, RedisReplyError, RedisUnavailable, command

ENTRY_OVERHEAD = 256
PREFIX = "gatewayctl:cache:"
STORE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

STORE_SCRIPT = b"""
local entry, index, sizes, bytes, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member, now, size, max = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function drop(m)
  local s = tonumber(redis.call('HGET', sizes, m) or 0)
  redis.call('HDEL', sizes, m)
  redis.call('ZREM', index, m)
  redis.call('DEL', ARGV[7] .. m)
  if s > 0 then redis.call('DECRBY', bytes, s) end
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', ARGV[8], 'LIMIT', 0, 64)) do
  drop(m)
end
drop(member)
local evicted = 0
while tonumber(redis.call('GET', bytes) or 0) + size > max do
  local oldest = redis.call('ZRANGE', index, 0, 0)
  if #oldest == 0 then break end
  drop(oldest[1])
  evicted = evicted + 1
end
redis.call('SET', entry, ARGV[2], 'EX', ARGV[3])
local order = redis.call('INCR', seq) % 1000000
redis.call('ZADD', index, (now + tonumber(ARGV[3])) * 1000000 + order, member)
redis.call('HSET', sizes, member, size)
redis.call('INCRBY', bytes, size)
return evicted
"""
STORE_SHA = hashlib.sha1(STORE_SCRIPT).hexdigest().encode()


@dataclass(frozen=True)
class Entry:
    body: bytes
    content_type: str
    model: str
    stored: int  # unix seconds


def encode_entry(entry: Entry) -> bytes:
    head = f"{entry.stored}\n{entry.model}\n{entry.content_type}\n"
    return head.encode("latin-1") + entry.body


def decode_entry(value: bytes) -> Entry:
    stored, model, ctype, body = value.split(b"\n", 3)
    return Entry(body, ctype.decode("latin-1"), model.decode("latin-1"), int(stored))


class SharedStore:
    """One gateway's stores in the Redis at `redis`."""

    def __init__(self, gateway: str, redis: RedisClient) -> None:
        self.gateway = gateway
        self.redis = redis

    def key_prefix(self, store: str) -> str:
        return f"{PREFIX}{{{self.gateway}/{store}}}:"

    def _entry_key(self, store: str, key: bytes) -> tuple[bytes, bytes]:
        digest = hashlib.sha256(key).hexdigest().encode()
        return digest, self.key_prefix(store).encode() + b"e:" + digest

    def lookup(self, store: str, key: bytes) -> Entry | None:
        """The entry stored under `key`, or None. RedisUnavailable when Redis fails."""
        _, entry_key = self._entry_key(store, key)
        (reply,) = self.redis.pipeline([command(b"GET", entry_key)])
        if isinstance(reply, RedisReplyError):
            raise RedisUnavailable(f"{self.redis.where()}: {reply}")
        if not isinstance(reply, bytes):
            return None
        try:
            return decode_entry(reply)
        except ValueError:
            return None  # not an entry this service wrote: a miss, overwritten by the next store

    def store(self, store: str, key: bytes, entry: Entry, ttl_s: int, max_bytes: int,
              now: int | None = None) -> int | None:
        """Store `entry` for ttl_s seconds within max_bytes; how many entries were evicted,
        None when the entry alone is larger than the store."""
        digest, entry_key = self._entry_key(store, key)
        value = encode_entry(entry)
        size = len(value) + len(digest) + ENTRY_OVERHEAD
        if size > max_bytes:
            return None
        prefix = self.key_prefix(store).encode()
        now = int(time.time()) if now is None else now
        # ARGV[8]: the index scores of entries whose time is up (expiry <= now)
        args = [b"5", entry_key, prefix + b"index", prefix + b"sizes", prefix + b"bytes",
                prefix + b"seq", digest, value, b"%d" % ttl_s, b"%d" % now, b"%d" % size,
                b"%d" % max_bytes, prefix + b"e:", b"(%d" % ((now + 1) * 1_000_000)]
        (reply,) = self.redis.pipeline([command(b"EVALSHA", STORE_SHA, *args)])
        if isinstance(reply, RedisReplyError) and str(reply).startswith("NOSCRIPT"):
            (reply,) = self.redis.pipeline([command(b"EVAL", STORE_SCRIPT, *args)])
        if isinstance(reply, RedisReplyError):
            raise RedisUnavailable(f"{self.redis.where()}: {reply}")
        return int(reply) if isinstance(reply, int) else 0

    def used_bytes(self, store: str) -> int:
        (reply,) = self.redis.pipeline([command(b"GET", self.key_prefix(store).encode()
                                                + b"bytes")])
        return int(reply) if isinstance(reply, bytes) else 0
