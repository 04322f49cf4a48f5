"""Text packed into a ConfigMap's binaryData: gzip (level 9, no timestamp), then base64.

Owns the one codec for the compiled IR record (`<gateway>-ir`, key `ir.json.gz`) and for Envoy
config too large to fit a ConfigMap plain (`lds.json.gz`, `cds.json.gz`): written by
`configmaps`, read back by the plan (which compares what is inside) and the targets (which
take the IR a gateway runs from it). Pure; knows nothing of what the text means.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib

IR_RECORD_KEY = "ir.json.gz"
PACKED_SUFFIX = ".gz"  # lds.json.gz: gzip of lds.json


def pack(text: str) -> str:
    """base64 of gzip of `text`: the same bytes for the same text (no timestamp)."""
    return base64.b64encode(gzip.compress(text.encode(), compresslevel=9, mtime=0)).decode("ascii")


def unpack(value: str) -> bytes:
    """What `pack` packed; ValueError, saying why, for anything else."""
    try:
        return gzip.decompress(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, OSError, EOFError, zlib.error) as err:
        raise ValueError(f"not base64 of gzip: {err}") from None
