"""Every diagnostic code the validator can emit is documented with an example."""

from __future__ import annotations

import re

from tests.conftest import REPO


def test_every_code_is_documented() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "gatewayctl").rglob("*.py"))
    codes = set(re.findall(r'"(GW\d{3})"', source))
    doc = (REPO / "docs" / "diagnostics.md").read_text()
    documented = set(re.findall(r"^## (GW\d{3}):", doc, re.M))
    assert codes <= documented, sorted(codes - documented)
    for code in codes:
        section = doc.split(f"## {code}:", 1)[1].split("\n## ", 1)[0]
        assert f"[{code}]" in section, f"{code} has no example"
