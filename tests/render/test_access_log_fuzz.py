"""The compiled access logger (module/gw_log.c) under a seeded random harness
(tests/render/module/fuzz_log.c), built with -fsanitize=address,undefined: four threads log
random records (strings of random bytes, valid and invalid UTF-8, control bytes; any double,
NaN and infinities included; absent values) into one file at once, and every line must be
exactly the line computed here by Envoy 1.40's rules (as the differential test against
Envoy's own logger pins them on real requests): whole, each thread's in its order, none
lost, no sanitizer report. Then again while another thread renames the file every 2 ms (a
rotation): the lines, across the renamed files and the last one in the order they were
written, are the same, each once."""

from __future__ import annotations

import datetime
import decimal
import math
import subprocess
from pathlib import Path

import pytest

from tests.render import sanitized

HARNESS = Path(__file__).resolve().parent / "module" / "fuzz_log.c"
SEEDS = (1, 2, 3, 4, 5)
RECORDS = 1500
THREADS = 4
FLAGS = ("LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
         "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF",
         "DO", "DR", "UDO")

pytestmark = pytest.mark.skipif(sanitized.compiler() is None, reason="no C compiler")


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
         "\t": "\\t"}


def envoy_string(data: bytes) -> str:
    """A JSON string as Envoy 1.40 writes it (measured: docs/data-plane.md)."""
    if _valid_utf8(data):
        text = data.decode("utf-8")
        out = [SHORT.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in text]
    else:
        out = [f"\\u{b:04x}" if b < 0x20 or b in b'"\\' or b >= 0x7F else chr(b) for b in data]
    return '"' + "".join(out) + '"'


def envoy_number(value: float) -> str:
    """std::to_chars' shortest form: fixed or scientific, whichever is shorter."""
    if math.isnan(value):
        return "null"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    dec = decimal.Decimal(repr(abs(float(value)))).normalize()
    digits = "".join(map(str, dec.as_tuple().digits))
    exp = len(digits) - 1 + int(dec.as_tuple().exponent)
    nd = len(digits)
    if exp >= nd - 1:
        fixed = digits + "0" * (exp - nd + 1)
    elif exp >= 0:
        fixed = digits[: exp + 1] + "." + digits[exp + 1:]
    else:
        fixed = "0." + "0" * (-exp - 1) + digits
    mantissa = digits[0] + ("." + digits[1:] if nd > 1 else "")
    sci = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + (fixed if len(fixed) <= len(sci) else sci)


def _field(text: str) -> bytes | None:
    return None if text == "-" else bytes.fromhex(text[1:])


def _string_or_null(value: bytes | None) -> str:
    return "null" if value is None else envoy_string(value)


def expected_line(record: str) -> str:
    (rid, path, method, details, cluster, model, host, ns_string, number, flag, port, status,
     flags, attempts, received, sent, start_ns, duration_ns, upstream_ns) = record.split("\t")
    gateway = []
    if flag != "-":
        gateway.append(f'"b":{flag}')
    if number != "-":
        gateway.append(f'"n":{envoy_number(float.fromhex(number))}')
    if ns_string != "-":
        gateway.append(f'"s":{envoy_string(_field(ns_string) or b"")}')
    names = [name for bit, name in enumerate(FLAGS) if int(flags) >> bit & 1]
    start = int(start_ns)
    when = datetime.datetime.fromtimestamp(start // 10**9, datetime.UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + f".{start // 10**6 % 1000:03d}Z"
    address = _field(host)
    upstream = "null"
    if address is not None:
        shown = address.decode()
        upstream = f'"[{shown}]:{port}"' if ":" in shown else f'"{shown}:{port}"'
    fields = [
        ("attempts", attempts),
        ("backend_cluster", _string_or_null(_field(cluster))),
        ("bytes_received", received),
        ("bytes_sent", sent),
        ("details", _string_or_null(_field(details))),
        ("duration_ms", "null" if int(duration_ns) < 0 else str(int(duration_ns) // 10**6)),
        ("flags", '"' + (",".join(names) or "-") + '"'),
        ("gateway", "{" + ",".join(gateway) + "}" if gateway else "null"),
        ("method", _string_or_null(_field(method))),
        ("model", _string_or_null(_field(model))),
        ("path", _string_or_null(_field(path))),
        ("request_id", envoy_string(rid.encode())),
        ("start_time", f'"{stamp}"'),
        ("status", status),
        ("upstream_host", upstream),
        ("upstream_ms", "null" if int(upstream_ns) < 0 else str(int(upstream_ns) // 10**6)),
    ]
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields) + "}"


def test_number_forms_are_envoys() -> None:
    """What Envoy 1.40 wrote for these values (measured with a Lua filter setting them)."""
    seen = {0.0001: "1e-04", 1200: "1200", 1e20: "1e+20", 123456789012345678: "123456789012345680",
            2.8e-06: "2.8e-06", 0.0001725: "0.0001725", 12: "12", 1.5: "1.5", 1e15: "1e+15",
            1e16: "1e+16", 0.1: "0.1", 1 / 3: "0.3333333333333333", 1e-7: "1e-07",
            123456.789: "123456.789", -0.0: "-0", float("nan"): "null", float("inf"): "inf"}
    for value, text in seen.items():
        assert envoy_number(value) == text, value


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sanitized.build(tmp_path_factory.mktemp("fuzz-log"), HARNESS,
                           ("gw_log.c", "gw_json.c", "gw_value.c"), "fuzz_log")


def _run(harness: Path, log: Path, seed: int, rotate: bool) -> tuple[list[str], list[str], str]:
    """The records handed over, the lines written (the renamed files' first, in the order of
    their renaming, then the file at the path) and the harness's stderr."""
    done = subprocess.run([str(harness), str(log), str(seed), str(RECORDS), str(THREADS),
                           "1" if rotate else "0"],
                          capture_output=True, timeout=600, check=False, env=sanitized.ENV)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-4000:]
    records = done.stdout.decode().splitlines()
    assert len(records) == RECORDS * THREADS
    rotated = sorted(log.parent.glob(log.name + ".*"), key=lambda p: int(p.suffix[1:]))
    lines = []
    for file in [*rotated, log]:
        raw = file.read_bytes() if file.exists() else b""
        assert raw == b"" or raw.endswith(b"\n"), file
        lines += raw.decode("utf-8").split("\n")[:-1]  # valid UTF-8: every odd byte escaped
    return records, lines, stderr


@pytest.mark.parametrize("seed", SEEDS)
def test_random_records_from_threads_at_once(harness: Path, tmp_path: Path, seed: int) -> None:
    records, lines, _ = _run(harness, tmp_path / "access.log", seed, rotate=False)
    _check(records, lines)


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_random_records_while_the_file_is_renamed(harness: Path, tmp_path: Path,
                                                  seed: int) -> None:
    log = tmp_path / "access.log"
    records, lines, stderr = _run(harness, log, seed, rotate=True)
    renames = int(stderr.split("renames ")[1].split()[0])
    assert renames >= 2, stderr  # the logger followed the path to a new file, more than once
    assert len(list(tmp_path.glob("access.log.*"))) == renames
    _check(records, lines)


def _check(records: list[str], lines: list[str]) -> None:
    assert sorted(lines) == sorted(expected_line(r) for r in records)
    for thread in range(THREADS):  # each logger's lines in its order
        ids = [line.split('"request_id":"')[1].split('"')[0] for line in lines]
        mine = [i for i in ids if i.startswith(f"t{thread}-")]
        assert mine == [f"t{thread}-{n}" for n in range(RECORDS)]
