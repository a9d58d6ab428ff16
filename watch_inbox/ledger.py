"""The watcher's Redis ledger: which inbox files are claimed, by whom, for which job.

This module owns every key under ``faxd:watch:`` (the job store owns ``faxd:job:*``;
the watcher only reads jobs through :class:`faxd.jobs.JobStore`). Per hot folder
(``fid``, the id in ``.work/folder-id``)::

    faxd:watch:<fid>:claims          set of claim ids not yet finished
    faxd:watch:<fid>:claim:<cid>     hash: rel, owner, state, claimed_at,
                                     sha256, job_id, outcome, dest
    faxd:watch:<fid>:lease:<wid>     a live watcher: {"host", "pid"}, with a TTL

A claim moves through ``claiming -> claimed -> submitted -> finishing`` and is then
deleted; :mod:`watch_inbox.watcher` describes what each state means on disk. A
claim belongs to one watcher (``owner``). A watcher whose lease has expired, or whose
process is gone on this host, is dead; any live watcher may adopt its claims with a
compare-and-set on ``owner``, so exactly one does.

Redis errors stop here: they become :class:`faxd.errors.StoreError`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis

from faxd.errors import StoreError

__all__ = ["KEY_PREFIX", "Ledger"]

KEY_PREFIX = "faxd:watch:"

# Set owner to ARGV[2] only if it is still ARGV[1]: one adopter wins.
_ADOPT = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', ARGV[2])
  return 1
end
return 0
"""


@contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise StoreError(
            f"Redis is unreachable or failed ({type(exc).__name__}); the watcher "
            "keeps its files and retries. Check REDIS_URL and the redis-server.",
        ) from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Ledger:
    """Claims and leases of one hot folder, for one watcher ``wid``."""

    def __init__(
        self, client: redis.Redis, folder_id: str, watcher_id: str, lease_s: float
    ) -> None:
        self.r = client
        self.fid = folder_id
        self.wid = watcher_id
        self.lease_ms = max(1, int(lease_s * 1000))
        self.host = socket.gethostname()
        self._adopt = self.r.register_script(_ADOPT)

    # -- keys ------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return KEY_PREFIX + ":".join((self.fid, *parts))

    @property
    def claims_key(self) -> str:
        return self._k("claims")

    def claim_key(self, cid: str) -> str:
        return self._k("claim", cid)

    def lease_key(self, wid: str) -> str:
        return self._k("lease", wid)

    # -- leases ----------------------------------------------------------------

    def hold_lease(self) -> None:
        """Announce (or renew) this watcher as alive for the lease time."""
        value = json.dumps({"host": self.host, "pid": os.getpid()})
        with _redis_errors():
            self.r.set(self.lease_key(self.wid), value, px=self.lease_ms)

    def release_lease(self) -> None:
        with _redis_errors():
            self.r.delete(self.lease_key(self.wid))

    def is_alive(self, wid: str) -> bool:
        """Whether watcher ``wid`` holds its lease (and, on this host, still runs)."""
        if wid == self.wid:
            return True
        with _redis_errors():
            raw = self.r.get(self.lease_key(wid))
        if raw is None:
            return False
        try:
            lease = json.loads(raw)
        except json.JSONDecodeError:
            return True
        if lease.get("host") == self.host and isinstance(lease.get("pid"), int):
            # A watcher restarted on this host need not wait out the old lease.
            return _pid_alive(lease["pid"])
        return True

    # -- claims ----------------------------------------------------------------

    def begin(self, cid: str, rel: str) -> None:
        """Record the intent to claim ``inbox/rel`` as ``cid`` (before the rename)."""
        with _redis_errors(), self.r.pipeline() as pipe:
            pipe.hset(
                self.claim_key(cid),
                mapping={
                    "rel": rel,
                    "owner": self.wid,
                    "state": "claiming",
                    "claimed_at": f"{time.time():.3f}",
                },
            )
            pipe.sadd(self.claims_key, cid)
            pipe.execute()

    def update(self, cid: str, fields: Mapping[str, str]) -> None:
        with _redis_errors():
            mapping: dict[str | bytes, str | bytes] = dict(fields.items())
            self.r.hset(self.claim_key(cid), mapping=mapping)  # type: ignore[arg-type]

    def get(self, cid: str) -> dict[str, str] | None:
        with _redis_errors():
            raw: dict[bytes, bytes] = self.r.hgetall(self.claim_key(cid))  # type: ignore[assignment]
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    def claim_ids(self) -> list[str]:
        with _redis_errors():
            members: set[bytes] = self.r.smembers(self.claims_key)  # type: ignore[assignment]
        return sorted(m.decode() for m in members)

    def adopt(self, cid: str, old_owner: str) -> bool:
        """Take claim ``cid`` over from ``old_owner``; False if someone else did."""
        with _redis_errors():
            won: Any = self._adopt(
                keys=[self.claim_key(cid)], args=[old_owner, self.wid]
            )
        return bool(won)

    def forget(self, cid: str) -> None:
        """Drop a finished (or never-started) claim."""
        with _redis_errors(), self.r.pipeline() as pipe:
            pipe.delete(self.claim_key(cid))
            pipe.srem(self.claims_key, cid)
            pipe.execute()
