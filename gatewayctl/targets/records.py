"""Reading back the IR a target recorded: the `<gateway>-ir` ConfigMap or a bundle's ir.json.

Pure decoding shared by the targets that hold Kubernetes objects (kubernetes, dir:PATH).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gatewayctl.errors import GatewayctlError
from gatewayctl.ir import GatewayIR, from_dict, to_dict
from gatewayctl.render.k8s.objects import KubeObject, is_owned_by, ref
from gatewayctl.render.k8s.packing import IR_RECORD_KEY, unpack


def parse_ir(text: str | bytes, known: GatewayIR | None, where: str) -> GatewayIR:
    """An IR from its JSON text; `known` itself when the text describes exactly it."""
    try:
        data = json.loads(text)
        if known is not None and data == to_dict(known):
            return known
        return from_dict(data)
    except (ValueError, TypeError, KeyError) as err:
        raise GatewayctlError(f"{where} does not hold a readable gatewayctl IR ({err})",
                              hint="apply the gateway again with this gatewayctl version"
                              ) from None


def ir_of_objects(objects: Sequence[KubeObject], gateway: str,
                  known: GatewayIR | None = None) -> GatewayIR | None:
    """The IR recorded in the gateway's `<gateway>-ir` ConfigMap, if there is one."""
    for obj in objects:
        record = (obj.get("binaryData") or {}).get(IR_RECORD_KEY)
        if obj.get("kind") == "ConfigMap" and record and is_owned_by(obj, gateway):
            where = f"ConfigMap {ref(obj)}"
            try:
                text = unpack(record)
            except ValueError as err:
                raise GatewayctlError(f"{where} does not hold a readable gatewayctl IR ({err})",
                                      hint="apply the gateway again") from None
            return parse_ir(text, known, where)
    return None
