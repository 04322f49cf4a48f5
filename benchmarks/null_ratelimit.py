"""A rate limit service that answers OK to every call at once: no decoding, no Redis. The floor
under the local stand-in in `dataplane_limits` (target `gateway-nullservice`): what Envoy's
two calls per request cost with a service that does nothing but speak gRPC over HTTP/2, on the
stand-in's own server (local/ratelimit/http2.py) and event loop.

    python -m benchmarks.null_ratelimit --port 8081
"""

from __future__ import annotations

import argparse

from gatewayctl.local.ratelimit.http2 import GRPC_OK, Server
from gatewayctl.local.ratelimit.server import new_event_loop
from gatewayctl.local.ratelimit.wire import OK, encode_overall

ANSWER = encode_overall(OK)


def answer(path: str, message: bytes) -> tuple[int, bytes]:
    return GRPC_OK, ANSWER


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    loop = new_event_loop()
    server = Server()
    loop.run_until_complete(server.start(answer, "127.0.0.1", args.port))
    print(f"null rate limit service on 127.0.0.1:{server.port}", flush=True)
    try:
        loop.run_forever()
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
