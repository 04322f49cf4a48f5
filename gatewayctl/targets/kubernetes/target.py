"""`--live kubernetes`: this gateway's labelled objects in the cluster of the kubeconfig.

read: list the managed kinds by the ownership labels, then preview each desired object with a
server-side-apply dry run (what the server would store). lock: a Lease `gatewayctl-<gateway>`.
apply: server-side apply (field manager `gatewayctl`) of what the plan creates or changes, all
dry-run first, the IR record last; prune what it deletes; wait for the Deployment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR
from gatewayctl.plan.compute import objects_to_apply
from gatewayctl.plan.model import DesiredState, ObservedState, Plan
from gatewayctl.plan.resource_diff import fingerprint
from gatewayctl.render.k8s.objects import KubeObject, ref
from gatewayctl.render.k8s.packing import IR_RECORD_KEY
from gatewayctl.render.k8s.provenance import Provenance
from gatewayctl.targets.base import (
    ApplyIncomplete,
    ApplyOptions,
    ApplyReport,
    Say,
    default_envoy_config,
    holder_identity,
    kubernetes_objects,
    resource_counts_summary,
)
from gatewayctl.targets.kubernetes.options import KubeOptions
from gatewayctl.targets.records import ir_of_objects

FIELD_MANAGER = "gatewayctl"
LEASE_MARGIN_S = 120.0
ROLLOUT_POLL_S = 0.5
Previews = tuple[list[KubeObject], tuple[str, ...], dict[str, tuple[str, ...]]]


class KubernetesTarget:
    writable = True

    def __init__(self, spec: str, options: KubeOptions) -> None:
        self.spec = spec
        self.options = options
        self.read_only = options.read_only  # preview client-side, never ask for a dry run
        self._client: Any = None

    def client(self) -> Any:
        """The connected `api.KubeClient` (created on first use)."""
        if self._client is None:
            from gatewayctl.targets.kubernetes.api import KubeClient

            self._client = KubeClient(self.options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def where(self) -> str:
        """The API server the kubeconfig and context point at."""
        return str(self.client().server)

    def render(self, ir: GatewayIR, provenance: Provenance) -> tuple[KubeObject, ...]:
        return kubernetes_objects(ir, provenance)

    def envoy_config(self, ir: GatewayIR) -> str:
        return default_envoy_config(ir)

    def envoy_env(self) -> None:
        return None

    def read(self, desired: DesiredState) -> ObservedState:
        gateway, namespace = desired.ir.name, desired.ir.namespace
        objects: list[KubeObject] = self.client().read_managed(gateway, namespace)
        planned, warnings, per_object = self.preview(list(desired.objects), objects)
        warnings = (*warnings, *self.missing_secrets(desired.objects, namespace))
        return ObservedState(ir_of_objects(objects, gateway, desired.ir), tuple(objects),
                             fingerprint(objects, desired.objects), tuple(planned), warnings,
                             tuple(sorted(per_object.items())))

    def preview(self, desired: list[KubeObject], live: list[KubeObject]) -> Previews:
        """What the server would store for each desired object: its answer to a
        server-side-apply dry run, or, for an identity that may not patch (403: a dry run is
        authorised as the write it previews), the same computed client-side from the live
        object (`normalise.preview_apply`); a plan needs only get and list.

        A field-ownership conflict does not stop the plan: the object is previewed as
        `--force-conflicts` would leave it, and the conflict becomes a warning on it."""
        from gatewayctl.render.k8s.objects import identity
        from gatewayctl.targets.kubernetes.errors import (
            KubeConflict,
            KubeForbidden,
            KubeNotFound,
        )
        from gatewayctl.targets.kubernetes.normalise import preview_apply

        client = self.client()
        planned: list[KubeObject] = []
        warnings: list[str] = []
        per_object: dict[str, tuple[str, ...]] = {}
        missing_namespaces: set[str] = set()
        live_by_id = {identity(o): o for o in live}
        for obj in desired:
            namespace = (obj.get("metadata") or {}).get("namespace", "")
            if namespace in missing_namespaces:
                planned.append(obj)
                continue
            if self.read_only:
                planned.append(preview_apply(live_by_id.get(identity(obj)), obj,
                                             FIELD_MANAGER))
                continue
            try:
                planned.append(client.dry_run_apply([obj])[0])
            except KubeConflict as err:
                fields = ", ".join(f"{c.field} (owned by {c.manager})" for c in err.conflicts)
                per_object[ref(obj)] = (
                    f"conflict: {fields or err.server_message}; apply needs --force-conflicts "
                    "to take these fields over",)
                planned.append(client.dry_run_apply([obj], force=True)[0])
            except KubeForbidden as err:
                self.read_only = True
                warnings.append(
                    f"read-only plan: {err.user or 'this identity'} may not {err.verb or 'patch'} "
                    f"{err.resource or 'these objects'}, so server-side apply was previewed "
                    "client-side, without a dry run (apply needs write access)")
                planned.append(preview_apply(live_by_id.get(identity(obj)), obj,
                                             FIELD_MANAGER))
            except KubeNotFound as err:
                if err.kind != "namespaces":
                    raise
                missing_namespaces.add(namespace)
                warnings.append(f'namespace "{namespace}" does not exist: create it before '
                                "applying (gatewayctl does not create namespaces)")
                planned.append(obj)
        return planned, tuple(warnings), per_object

    def missing_secrets(self, desired: tuple[KubeObject, ...], namespace: str
                        ) -> tuple[str, ...]:
        """Warnings for the Secrets the desired pods mount that the cluster does not have
        (pods that mount a missing Secret never start). Values are never read into a plan."""
        from gatewayctl.targets.kubernetes.errors import KubeForbidden, KubeNotFound

        wanted: dict[str, list[str]] = {}
        for obj in desired:
            pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
            for volume in pod.get("volumes") or []:
                secret = (volume.get("secret") or {}).get("secretName")
                if secret and not (volume.get("secret") or {}).get("optional"):
                    wanted.setdefault(secret, []).append(ref(obj))
        out = []
        for name, users in sorted(wanted.items()):
            try:
                self.client().request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}",
                                      what=f"check Secret {namespace}/{name}")
            except KubeNotFound:
                out.append(f"Secret {namespace}/{name} does not exist: the pods of "
                           f"{', '.join(sorted(set(users)))} will not start until it does "
                           f"(kubectl -n {namespace} create secret generic {name} ...)")
            except KubeForbidden as err:
                who = err.user or "this identity"
                out.append(f"the referenced Secrets were not checked: {who} may not get "
                           "secrets")
                break
        return tuple(out)

    @contextlib.contextmanager
    def lock(self, gateway: str, namespace: str, timeout: float) -> Iterator[None]:
        from gatewayctl.targets.kubernetes.errors import KubeNotFound

        client = self.client()
        try:
            lease = client.acquire_lease(f"gatewayctl-{gateway}", namespace,
                                         holder_identity(), timeout + LEASE_MARGIN_S)
        except KubeNotFound as err:
            raise GatewayctlError(
                f'cannot lock gateway {gateway}: namespace "{namespace}" does not exist '
                f"({err.server_message})",
                hint=f"create it first: kubectl create namespace {namespace}") from None
        try:
            yield
        finally:
            with contextlib.suppress(GatewayctlError):
                client.release_lease(lease)

    def apply(self, plan: Plan, options: ApplyOptions, say: Say) -> ApplyReport:
        from gatewayctl.targets.kubernetes.api import Progress
        from gatewayctl.targets.kubernetes.errors import (
            KubeApplyError,
            KubeError,
            RolloutFailedError,
            RolloutTimeoutError,
        )

        assert plan.desired is not None
        objects = list(plan.desired.objects)
        client = self.client()
        lines: list[str] = []
        to_apply = objects_to_apply(plan, objects)
        # The IR record goes last, so that it never claims more than what was applied.
        records = [o for o in to_apply if IR_RECORD_KEY in (o.get("binaryData") or {})]
        rest = [o for o in to_apply if o not in records]
        offset = {"apply": 0}

        def progress(p: Progress) -> None:
            if p.action == "validated":
                return
            index, total = p.index, p.total
            if p.action in ("created", "configured", "unchanged"):
                index, total = index + offset["apply"], len(to_apply)
            where = f"[{index}/{total}] " if total else ""
            line = f"{where}{p.action} {p.ref}" + (f": {p.detail}" if p.detail else "")
            if p.action != "rollout":
                lines.append(line)
            say(line)

        applied: list[str] = []
        for batch in (rest, records):
            if not batch:
                continue
            try:
                result = client.apply_objects(batch, field_manager=FIELD_MANAGER,
                                              force_conflicts=options.force_conflicts,
                                              on_progress=progress)
            except KubeApplyError as err:
                raise KubeApplyError(err.failed, err.cause, (*applied, *err.applied),
                                     err.not_applied + tuple(ref(o) for o in records
                                                             if batch is rest)) from None
            except KubeError as err:
                if not applied:
                    raise
                raise KubeApplyError(ref(batch[0]), err, tuple(applied),
                                     tuple(ref(o) for o in batch)) from None
            applied += [a.ref for a in result.applied]
            offset["apply"] = len(applied)
        doomed = [c for c in plan.pending("resource") if c.action == "delete"]
        pruned: list[str] = []
        if doomed:
            def track(p: Progress) -> None:
                pruned.append(p.ref)
                progress(p)

            try:
                client.prune(objects, plan.gateway, plan.namespace, on_progress=track)
            except KubeError as err:
                left = [c.address for c in doomed if c.address not in pruned]
                raise ApplyIncomplete(
                    f"applied {len(applied)} object(s), but pruning stopped: {err.message} "
                    f"(pruned {len(pruned)}: {', '.join(pruned) or 'none'}; not pruned "
                    f"{len(left)}: {', '.join(left) or 'none'})",
                    hint=err.hint or "run apply again; applying is idempotent") from None
        deployment = next((o for o in to_apply if o.get("kind") == "Deployment"), None)
        rollout = ""
        if deployment is not None:
            name = deployment["metadata"]["name"]
            try:
                client.wait_for_rollout(name, plan.namespace, options.timeout,
                                        on_progress=progress, poll_interval=ROLLOUT_POLL_S)
            except (RolloutTimeoutError, RolloutFailedError) as err:
                raise ApplyIncomplete(
                    f"every object was applied ({len(applied)} applied, {len(pruned)} "
                    f"pruned), but {err.message}", hint=err.hint) from None
            rollout = f"; deployment {plan.namespace}/{name} rolled out"
        return ApplyReport(self.spec, tuple(lines),
                           f"{resource_counts_summary(plan, len(pruned))}{rollout}.")
