"""The one codec of binaryData (the IR record, packed Envoy config): written and read back."""

from __future__ import annotations

import pytest

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, to_json
from gatewayctl.plan.resource_diff import normalize
from gatewayctl.render.k8s import Provenance
from gatewayctl.render.k8s.configmaps import ir_json, render_ir_configmap
from gatewayctl.render.k8s.packing import IR_RECORD_KEY, pack, unpack
from gatewayctl.targets.records import ir_of_objects


def test_pack_is_deterministic_and_unpacks() -> None:
    assert pack("héllo") == pack("héllo")
    assert unpack(pack("héllo")).decode() == "héllo"


@pytest.mark.parametrize("value", ["not base64!", "aGVsbG8=", "bm90IGd6aXA="])
def test_unpack_says_what_is_wrong(value: str) -> None:
    with pytest.raises(ValueError, match="not base64 of gzip"):
        unpack(value)


def test_the_ir_record_is_written_and_read_with_the_same_codec(multi_team: GatewayIR) -> None:
    cm = render_ir_configmap(multi_team, Provenance(), ir_json(multi_team))

    assert unpack(cm["binaryData"][IR_RECORD_KEY]).decode() == to_json(multi_team, indent=None)
    assert ir_of_objects([cm], multi_team.name) == multi_team
    assert normalize(cm)["binaryData"][IR_RECORD_KEY].startswith("sha256:")


def test_a_corrupt_ir_record_is_an_error_not_a_missing_one(multi_team: GatewayIR) -> None:
    cm = render_ir_configmap(multi_team, Provenance(), ir_json(multi_team))
    cm["binaryData"][IR_RECORD_KEY] = pack("{not json")

    with pytest.raises(GatewayctlError, match="ConfigMap ai-gateway/ai-gateway-ir does not "
                       "hold a readable gatewayctl IR"):
        ir_of_objects([cm], multi_team.name)
    cm["binaryData"][IR_RECORD_KEY] = "garbage"
    with pytest.raises(GatewayctlError, match="not base64 of gzip"):
        ir_of_objects([cm], multi_team.name)
    assert normalize(cm)["binaryData"][IR_RECORD_KEY].startswith("unreadable:")
