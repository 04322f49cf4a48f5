"""The apply lease and waiting for the Deployment rollout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gatewayctl.targets.kubernetes.api import KubeClient, Progress
from gatewayctl.targets.kubernetes.errors import (
    LockHeldError,
    RolloutFailedError,
    RolloutTimeoutError,
)
from tests.fakes.kubeapi import KubeAPIServer
from tests.targets.kubernetes import NAMESPACE, gateway_objects


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seed_lease(server: KubeAPIServer, holder: str, renewed: datetime, ttl: int) -> None:
    server.seed({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": "gatewayctl-ai-gateway", "namespace": NAMESPACE},
                 "spec": {"holderIdentity": holder, "leaseDurationSeconds": ttl,
                          "acquireTime": "2030-01-01T10:00:00.000000Z",
                          "renewTime": _micro(renewed)}})


def test_lease_is_created_then_released(server: KubeAPIServer, kube: KubeClient) -> None:
    lease = kube.acquire_lease("gatewayctl-ai-gateway", NAMESPACE, "ci-job-1", ttl=60)

    stored = server.get_object("coordination.k8s.io/v1", "Lease", NAMESPACE,
                               "gatewayctl-ai-gateway")
    assert stored is not None
    assert stored["spec"]["holderIdentity"] == "ci-job-1"
    assert stored["spec"]["leaseDurationSeconds"] == 60
    assert lease.holder == "ci-job-1"

    assert kube.release_lease(lease) is True
    again = kube.acquire_lease("gatewayctl-ai-gateway", NAMESPACE, "ci-job-2", ttl=60)
    assert again.holder == "ci-job-2"


def test_lease_held_by_another_holder_raises_lock_held(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    _seed_lease(server, "ci-job-7", datetime.now(UTC), ttl=600)

    with pytest.raises(LockHeldError) as caught:
        kube.acquire_lease("gatewayctl-ai-gateway", NAMESPACE, "laptop-alice", ttl=60)

    assert caught.value.holder == "ci-job-7"
    assert caught.value.since == "2030-01-01T10:00:00.000000Z"
    assert caught.value.message == (
        "another apply is in progress: lease ai-gateway/gatewayctl-ai-gateway is held by "
        '"ci-job-7" since 2030-01-01T10:00:00.000000Z')


def test_expired_lease_is_taken_over(server: KubeAPIServer, kube: KubeClient) -> None:
    _seed_lease(server, "ci-job-7", datetime.now(UTC) - timedelta(seconds=120), ttl=60)

    lease = kube.acquire_lease("gatewayctl-ai-gateway", NAMESPACE, "laptop-alice", ttl=60)

    stored = server.get_object("coordination.k8s.io/v1", "Lease", NAMESPACE,
                               "gatewayctl-ai-gateway")
    assert stored is not None
    assert lease.holder == "laptop-alice"
    assert stored["spec"]["holderIdentity"] == "laptop-alice"
    assert stored["spec"]["leaseTransitions"] == 1


def test_release_leaves_a_lease_taken_by_someone_else(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    lease = kube.acquire_lease("gatewayctl-ai-gateway", NAMESPACE, "ci-job-1", ttl=60)
    stored = server.get_object("coordination.k8s.io/v1", "Lease", NAMESPACE,
                               "gatewayctl-ai-gateway")
    assert stored is not None
    stored["spec"]["holderIdentity"] = "ci-job-2"
    server.replace(stored)

    assert kube.release_lease(lease) is False
    after = server.get_object("coordination.k8s.io/v1", "Lease", NAMESPACE,
                              "gatewayctl-ai-gateway")
    assert after is not None and after["spec"]["holderIdentity"] == "ci-job-2"


def test_wait_for_rollout_succeeds_with_progress(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    server.rollout.delay = 0.3
    kube.apply_objects(gateway_objects())
    events: list[Progress] = []

    final = kube.wait_for_rollout("ai-gateway", NAMESPACE, timeout=5, on_progress=events.append,
                                  poll_interval=0.05)

    assert final["status"]["availableReplicas"] == 2
    assert final["status"]["observedGeneration"] == 1
    assert [e.detail for e in events] == [
        "0 of 2 new replicas have been updated",
        "successfully rolled out (2 of 2 replicas available)",
    ]


def test_wait_for_rollout_times_out(server: KubeAPIServer, kube: KubeClient) -> None:
    server.rollout.mode = "never"
    kube.apply_objects(gateway_objects())

    with pytest.raises(RolloutTimeoutError) as caught:
        kube.wait_for_rollout("ai-gateway", NAMESPACE, timeout=0.3, poll_interval=0.05)

    assert caught.value.message == (
        "deployment ai-gateway/ai-gateway did not finish rolling out within 0.3s: "
        "0 of 2 new replicas have been updated")


def test_wait_for_rollout_reports_progress_deadline_exceeded(
    server: KubeAPIServer, kube: KubeClient
) -> None:
    server.rollout.mode = "deadline-exceeded"
    kube.apply_objects(gateway_objects())

    with pytest.raises(RolloutFailedError) as caught:
        kube.wait_for_rollout("ai-gateway", NAMESPACE, timeout=2, poll_interval=0.05)

    assert "has timed out progressing" in caught.value.message
