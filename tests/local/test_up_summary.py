"""`up`'s summary lists what clients send as `model` (the routes' public names), under that
label: it said "routes:" over public names, so examples/multi-team showed "routes: chat,
text-embedding-3-small, ..." while `test` and `explain` call that route "embeddings"."""

from __future__ import annotations

from gatewayctl.local.gateway import UpResult
from gatewayctl.local.rendering import Ports


def test_the_summary_lists_the_public_model_names_sorted() -> None:
    result = UpResult("/r", "/s", Ports(8080, 9901, 9000), 1, 2, 0.1, "v1",
                      ("chat", "text-embedding-3-small", "llama-70b", "support-assistant"),
                      (("openai", "no credential"),), (), "curl ...", "module")
    lines = result.summary().splitlines()
    assert lines[1] == ("  models: chat, llama-70b, support-assistant, text-embedding-3-small "
                        "(the routes' public names: what clients send as `model`)")
    assert not any(line.lstrip().startswith("routes:") for line in lines)
