"""Publishing LDS/RDS/CDS to a running Envoy: atomic swaps, in an order that never breaks a route.

Envoy watches the config directory and re-reads `lds.json`, `rds.json` (the route table) and
`cds.json` when `..data` is replaced. Writing follows kubelet's AtomicWriter: the files go into
a fresh `..<timestamp>` directory, a `..data_tmp` symlink to it is renamed over `..data` (one
atomic rename), and the top-level `lds.json -> ..data/lds.json` (and the others') links never
change.

LDS and CDS are separate subscriptions with no transaction between them, so a change is
published in up to three swaps, each confirmed through the admin stats before the next:

  1. clusters added:   old routes + (old and new clusters)   wait cds.update_success
  2. routes:           new routes + (new and removed clusters) wait lds.update_success
  3. clusters removed: new routes + new clusters             wait cds.update_success

At every moment each served route's clusters exist. Steps that change nothing are skipped.
Step 3 is safe only for connections that use the new routes: Envoy lets connections opened
before step 2 finish on the old routes, so `live.py` keeps the clusters those can reach until
they have drained (the caller passes them in `new`).
A rejected or failed update stops the sequence, and what Envoy still serves is published back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gatewayctl.atomic import fsync_dir
from gatewayctl.errors import GatewayctlError
from gatewayctl.local.admin import CDS, LDS, RDS, AdminClient, cluster_names
from gatewayctl.local.process import log_size, log_tail
from gatewayctl.local.state import CorruptStateFile, read_record

FILES = {"lds": "lds.json", "cds": "cds.json", "rds": "rds.json"}
NO_RESOURCES: dict[str, Any] = {"resources": []}
Resources = Mapping[str, Any]  # a DiscoveryResponse: version_info + resources
Progress = Callable[[str], None]


def canonical(doc: Resources) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n"


class ConfigDir:
    """A directory of LDS/CDS files that readers only ever see whole (the `..data` swap)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seq = 0

    def publish(self, docs: Mapping[str, Resources]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = time.strftime("%Y_%m_%d_%H_%M_%S") + f".{time.time_ns() % 10**9:09d}"
        target = self.path / f"..{stamp}_{os.getpid()}_{self._seq}"
        target.mkdir()
        for kind, filename in FILES.items():
            with open(target / filename, "w", encoding="utf-8") as fh:
                fh.write(canonical(docs.get(kind, NO_RESOURCES)))
                fh.flush()
                os.fsync(fh.fileno())
        tmp = self.path / "..data_tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target.name, tmp)
        old = os.readlink(self.path / "..data") if (self.path / "..data").is_symlink() else None
        os.rename(tmp, self.path / "..data")  # the one atomic step readers observe
        for filename in FILES.values():
            link = self.path / filename
            if not link.is_symlink():
                if link.exists():
                    link.unlink()
                os.symlink(f"..data/{filename}", link)
        fsync_dir(self.path)
        for entry in self.path.iterdir():  # older timestamp dirs are no longer referenced
            if entry.name.startswith("..") and entry.name not in ("..data", target.name) \
                    and entry.is_dir() and not entry.is_symlink() and entry.name != old:
                shutil.rmtree(entry, ignore_errors=True)
        if old and old != target.name:
            shutil.rmtree(self.path / old, ignore_errors=True)

    def read(self) -> dict[str, dict[str, Any]] | None:
        """The published files, or None before the first publish; CorruptStateFile when one
        is missing or damaged after it. `rds.json` may be absent (a folder published before
        the route table had its own file) or hold no table (nothing subscribes to it): then
        the result has no "rds"."""
        docs = {kind: read_record(self.path / name, _json_object)
                for kind, name in FILES.items() if kind != "rds"}
        if all(doc is None for doc in docs.values()):
            return None
        missing = [FILES[kind] for kind, doc in docs.items() if doc is None]
        if missing:
            raise CorruptStateFile(self.path / missing[0], "missing beside the others")
        out = {kind: doc for kind, doc in docs.items() if doc is not None}
        rds = read_record(self.path / FILES["rds"], _json_object)
        if rds is not None and rds.get("resources"):
            out["rds"] = rds
        return out


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True)
class PublishStep:
    label: str
    lds: Resources
    cds: Resources
    rds: Resources = field(default_factory=dict)  # the route table (RDS)

    def docs(self) -> dict[str, Resources]:
        return {"lds": self.lds, "cds": self.cds, "rds": self.rds}


def plan_steps(old_lds: Resources, old_cds: Resources, new_lds: Resources,
               new_cds: Resources, old_rds: Resources | None = None,
               new_rds: Resources | None = None) -> list[PublishStep]:
    """The swaps that take Envoy from old to new without a route to a missing cluster. The
    route table (RDS) and the listener (LDS) change together, in the "update routes" swap."""
    old_r: Resources = old_rds if old_rds is not None else {}
    new_r: Resources = new_rds if new_rds is not None else old_r
    added = cluster_names(new_cds) - cluster_names(old_cds)
    removed = cluster_names(old_cds) - cluster_names(new_cds)
    keep = [r for r in old_cds.get("resources", []) if r.get("name") in removed]
    union: Resources = {**new_cds, "resources": [*new_cds.get("resources", []), *keep]}
    if removed:
        union = {**union, "version_info": f"{new_cds.get('version_info', '')}+removing"}
    steps: list[PublishStep] = []
    if added:
        steps.append(PublishStep(f"add {len(added)} cluster(s)", old_lds, union, old_r))
    same_resources = _same(union.get("resources"), old_cds.get("resources"))
    routes_changed = canonical(new_lds) != canonical(old_lds) or (
        canonical(new_r) != canonical(old_r))
    if routes_changed or not (added or removed or same_resources):
        steps.append(PublishStep("update routes", new_lds, union, new_r))
    if removed:
        steps.append(PublishStep(f"remove {len(removed)} cluster(s)", new_lds, new_cds, new_r))
    return steps


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class PublishFailed(GatewayctlError):
    """Envoy rejected a published update; `envoy_message` holds its reason from the log."""

    def __init__(self, message: str, envoy_message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.envoy_message = envoy_message


@dataclass
class Publisher:
    """Drives a ConfigDir and confirms every swap through Envoy's admin stats."""

    config_dir: ConfigDir
    admin: AdminClient
    envoy_log: Path
    step_timeout: float = 15.0

    def apply(self, old: Mapping[str, Resources], new: Mapping[str, Resources],
              progress: Progress = lambda _m: None) -> int:
        """Take Envoy from `old` (what it serves) to `new`; returns the number of swaps.

        On a rejected or failed update, what Envoy still serves is published back, then the
        rest of the way to `old` (in safe order too), and PublishFailed is raised.
        """
        served: dict[str, Resources] = dict(old)  # per subscription: what Envoy runs
        on_disk: dict[str, Resources] = dict(self.config_dir.read() or old)
        swaps = 0
        try:
            for step in plan_steps(old["lds"], old["cds"], new["lds"], new["cds"],
                                   old.get("rds"), new.get("rds")):
                swaps += self._swap(step, served, on_disk, progress)
        except PublishFailed as failure:
            progress("Envoy refused the update; restoring the previous configuration")
            try:
                undo = [PublishStep("restore what Envoy serves", served["lds"], served["cds"],
                                    served.get("rds", {})),
                        *plan_steps(served["lds"], served["cds"], old["lds"], old["cds"],
                                    served.get("rds"), old.get("rds"))]
                for step in undo:
                    self._swap(step, served, on_disk, progress)
            except GatewayctlError as again:
                failure.message += f"; restoring the previous configuration failed too: " \
                                   f"{again.message}"
            raise
        return swaps

    def republish(self, docs: Mapping[str, Resources],
                  progress: Progress = lambda _m: None) -> int:
        """Make Envoy read `docs` again although the files already hold them (it serves
        something else: the files were changed without a `..data` swap). Returns 1."""
        before = self.admin.counters()
        since = log_size(self.envoy_log)
        started = time.monotonic()
        self.config_dir.publish(docs)
        for kind in ("cds", "rds", "lds"):
            if kind != "rds" or docs.get(kind, NO_RESOURCES).get("resources"):
                self._wait_accepted(kind, before, since, "re-read")
        self._wait_warm()
        progress(f"  re-read of the published config: accepted in "
                 f"{time.monotonic() - started:.2f}s")
        return 1

    def _swap(self, step: PublishStep, served: dict[str, Resources],
              on_disk: dict[str, Resources], progress: Progress) -> int:
        """Publish one step and wait until Envoy accepted each file that changed."""
        docs = step.docs()
        changed = [k for k in ("cds", "rds", "lds")
                   if canonical(docs[k] or NO_RESOURCES)
                   != canonical(on_disk.get(k) or NO_RESOURCES)]
        if not changed:
            return 0
        before = self.admin.counters()
        since = log_size(self.envoy_log)
        started = time.monotonic()
        self.config_dir.publish(docs)
        on_disk.update(docs)
        for kind in changed:
            if kind != "rds" or docs[kind].get("resources"):  # no table: no subscription
                self._wait_accepted(kind, before, since, step.label)
            served[kind] = docs[kind]
        self._wait_warm()
        progress(f"  {step.label}: accepted in {time.monotonic() - started:.2f}s")
        return 1

    def _wait_accepted(self, kind: str, before: Mapping[str, int], since: int,
                       label: str) -> None:
        prefix = {"cds": CDS, "lds": LDS, "rds": RDS}[kind]
        deadline = time.monotonic() + self.step_timeout
        while True:
            now = self.admin.counters()
            for bad in ("update_rejected", "update_failure"):
                name = f"{prefix}.{bad}"
                if now.get(name, 0) > before.get(name, 0):
                    time.sleep(0.05)  # the reason is logged right after the stat moves
                    detail = _envoy_complaint(self.envoy_log, since)
                    raise PublishFailed(
                        f"Envoy rejected the {kind.upper()} update ({label}): {detail}",
                        detail, hint=f"Envoy keeps serving its previous {kind.upper()}; "
                        f"the full log is {self.envoy_log}")
            name = f"{prefix}.update_success"
            if now.get(name, 0) > before.get(name, 0):
                return
            if time.monotonic() >= deadline:
                raise PublishFailed(
                    f"Envoy did not confirm the {kind.upper()} update ({label}) within "
                    f"{self.step_timeout:.0f}s", "",
                    hint=f"see {self.envoy_log}; `gatewayctl status` shows what it serves")
            time.sleep(0.02)

    def _wait_warm(self) -> None:
        """New clusters and listeners are usable only once warm (DNS resolved, etc.)."""
        deadline = time.monotonic() + self.step_timeout
        names = ("cluster_manager.warming_clusters", "listener_manager.total_listeners_warming")
        while time.monotonic() < deadline:
            now = self.admin.counters(names)
            if all(now.get(n, 0) == 0 for n in names):
                return
            time.sleep(0.02)
        raise PublishFailed("Envoy's new clusters or listeners did not finish warming within "
                            f"{self.step_timeout:.0f}s", "", hint=f"see {self.envoy_log}")


def _envoy_complaint(log: Path, since: int) -> str:
    tail = log_tail(log, lines=400, since=since)
    hits = [ln.split("] ", 1)[-1].strip() for ln in tail.splitlines()
            if any(w in ln for w in ("rejected", "update failure", "Unable to parse", "error"))]
    return " | ".join(hits[-2:]) or "no reason in Envoy's log"
