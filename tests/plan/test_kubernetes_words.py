"""Gateway.spec.kubernetes in the plan: each setting in the manifest's own name
(`kubernetes.nodeSelector`), not as "other change: kubernetes.node_selector...", as
docs/plan-and-apply.md promises for every Gateway field; a setting at gatewayctl's default is
not listed, so a plan that creates everything shows only what the manifests set."""

from __future__ import annotations

from dataclasses import fields, replace

from gatewayctl.ir import KubernetesIR
from gatewayctl.local.rendering import load_ir
from gatewayctl.plan.manifest_diff import KUBERNETES_FIELDS, diff_gateway_ir
from tests.conftest import REPO

QUICKSTART = load_ir(REPO / "examples" / "quickstart")


def _gateway_details(before: KubernetesIR, after: KubernetesIR) -> list[tuple[str, object,
                                                                            object]]:
    changes = diff_gateway_ir(replace(QUICKSTART, kubernetes=before),
                              replace(QUICKSTART, kubernetes=after))
    assert [c.kind for c in changes] == ["Gateway"]
    return [(d.field, d.before, d.after) for d in changes[0].details]


def test_settings_changed_are_worded_in_manifest_names() -> None:
    before = KubernetesIR()
    after = KubernetesIR(resources={"requests": {"cpu": "500m"}},
                         node_selector={"kubernetes.io/os": "linux"}, pod_monitor=True,
                         service_type="LoadBalancer", network_policy=False)
    assert _gateway_details(before, after) == [
        ("kubernetes.resources", None, '{"requests": {"cpu": "500m"}}'),
        ("kubernetes.nodeSelector", None, '{"kubernetes.io/os": "linux"}'),
        ("kubernetes.service.type", None, "LoadBalancer"),
        ("kubernetes.podMonitor.enabled", None, True),
        ("kubernetes.networkPolicy", None, False),
    ]
    assert [f for f, _, _ in _gateway_details(after, before)] == [
        "kubernetes.resources", "kubernetes.nodeSelector", "kubernetes.service.type",
        "kubernetes.podMonitor.enabled", "kubernetes.networkPolicy"]


def test_no_kubernetes_setting_is_an_other_change() -> None:
    after = KubernetesIR(tolerations=({"key": "dedicated", "operator": "Exists"},),
                         affinity={"nodeAffinity": {}}, priority_class_name="critical",
                         service_annotations={"a": "b"}, labels={"team": "x"},
                         annotations={"note": "y"}, pod_monitor_interval="10s",
                         pod_monitor_labels={"release": "p"}, cache_store_image="reg/gw:1")
    details = _gateway_details(KubernetesIR(), after)
    assert len(details) == 9
    assert not [f for f, _, _ in details if f.startswith("other change")]


def test_creating_a_gateway_lists_only_what_the_manifests_set() -> None:
    [gateway] = [c for c in diff_gateway_ir(None, QUICKSTART) if c.kind == "Gateway"]
    assert not [d for d in gateway.details if d.field.startswith("kubernetes.")]


def test_every_kubernetes_setting_has_a_manifest_name() -> None:
    """ir_diff covers every `kubernetes.*` IR path, so a KubernetesIR field missing from
    KUBERNETES_FIELDS would change the deployment with no line in the plan; the mutations of
    test_completeness do not reach dict-valued fields, hence this check."""
    assert set(KUBERNETES_FIELDS) == {f.name for f in fields(KubernetesIR)}
