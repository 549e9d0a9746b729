"""Property tests: the parser's contract holds for any bytes.

`parse_message` returns a message or raises `SipParseError` (never another
exception, never slowly), a parsed message survives serialise + parse
unchanged, and `StreamFramer` cuts a stream the same way however it is chunked.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpbx_media.sip.errors import SipParseError
from vpbx_media.sip.headers import NameAddr, Via, quote_string
from vpbx_media.sip.message import (
    Headers,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
)
from vpbx_media.sip.uri import SipUri

FIXTURES = Path(__file__).parent / "fixtures" / "rfc4475"
ALL_FIXTURES = {path.stem: path.read_bytes() for path in sorted(FIXTURES.glob("*.sip"))}
PARSEABLE: dict[str, bytes] = {}
for _name, _data in ALL_FIXTURES.items():
    try:
        parse_message(_data)
    except SipParseError:
        continue
    PARSEABLE[_name] = _data
SERIALISED = [bytes(parse_message(data)) for data in PARSEABLE.values()]

# A deadline turns a pathological slow path (a hang in the making) into a failure.
FUZZ = settings(
    max_examples=300,
    deadline=500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ALLOWED_STATUSES = {400, 505, 513}


def check_contract(data: bytes) -> SipMessage | None:
    """Parse; on success the message must round-trip, on failure carry a sane status."""
    message: SipMessage | None = None
    error: SipParseError | None = None
    try:
        message = parse_message(data)
    except SipParseError as exc:
        error = exc
    if message is None:
        assert error is not None
        assert error.status_code in ALLOWED_STATUSES
        assert error.reason
        return None
    wire = bytes(message)
    again = parse_message(wire)
    assert again == message
    assert bytes(again) == wire
    return message


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check_contract(data)


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=1024))
def test_random_text_after_a_start_line(text: str) -> None:
    check_contract(b"OPTIONS sip:a@example.com SIP/2.0\r\n" + text.encode())


Mutation = tuple[str, int, int]
MUTATION_KINDS = ("flip", "truncate", "dup_line", "drop_line", "insert", "huge_length")
INSERTS = (b"\r", b"\n", b"\x00", b"\r\n", b"\r\n ", b"\n\n", b";", b",", b'"', b"<", b"%", b"\xff")


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    out = bytearray(data)
    for kind, position, value in mutations:
        at = position % (len(out) + 1)
        if kind == "flip" and out:
            out[at % len(out)] = value % 256
        elif kind == "truncate":
            del out[at:]
        elif kind in ("dup_line", "drop_line"):
            lines = bytes(out).split(b"\r\n")
            index = position % len(lines)
            if kind == "dup_line":
                lines.insert(index, lines[index])
            else:
                del lines[index]
            out = bytearray(b"\r\n".join(lines))
        elif kind == "insert":
            out[at:at] = INSERTS[value % len(INSERTS)]
        elif kind == "huge_length":
            digits = b"9" * (1 + value % 40)
            out = bytearray(
                bytes(out).replace(b"Content-Length: ", b"Content-Length: " + digits, 1)
            )
    return bytes(out)


mutations_strategy = st.lists(
    st.tuples(
        st.sampled_from(MUTATION_KINDS),
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=255),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(st.sampled_from(sorted(ALL_FIXTURES)), mutations_strategy)
def test_mutated_fixtures(name: str, mutations: list[Mutation]) -> None:
    check_contract(mutate(ALL_FIXTURES[name], mutations))


def test_pathological_inputs_are_fast() -> None:
    head = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h"
    near_limit = 60_000
    cases = [
        head + b";a" * (near_limit // 2) + b"\r\n\r\n",
        head + b';a=""' * (near_limit // 5) + b"\r\n\r\n",
        head + b"\r\n x" * (near_limit // 4) + b"\r\n\r\n",
        head + b"\r\nX: " + b"," * near_limit + b"\r\n\r\n",
        head + b"\r\nTo: " + b'"' + b"\\" * near_limit + b"\r\n\r\n",
        b"\r\n" * (near_limit // 2),
        b"a" * near_limit,
    ]
    for data in cases:
        started = time.monotonic()
        check_contract(data)
        assert time.monotonic() - started < 1.0


# --- generated well-formed messages -------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=12)
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda octets: ".".join(map(str, octets))),
    st.just("[2001:db8::1]"),
)
ports = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
users = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/", min_size=1)
uri_params = st.lists(st.tuples(labels, st.one_of(st.none(), labels)), max_size=3).map(tuple)
sip_uris = st.builds(
    SipUri,
    host=hosts,
    user=st.one_of(st.none(), users.filter(lambda u: len(u) < 20)),
    port=ports,
    params=uri_params,
    scheme=st.sampled_from(["sip", "sips"]),
)
# Any text but line breaks, which would split the header line.
display_names = st.one_of(
    st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20)
)
name_addrs = st.builds(
    NameAddr,
    uri=sip_uris,
    display_name=display_names,
    params=st.lists(st.tuples(labels, st.one_of(st.none(), tokens)), max_size=2).map(tuple),
)
vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    host=hosts,
    port=ports,
    params=st.lists(st.tuples(labels, st.one_of(st.none(), tokens)), max_size=3).map(tuple),
)
unknown_values = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40).map(
    lambda text: text.strip(" \t")
)
extra_headers = st.lists(
    st.tuples(st.sampled_from(["X-Custom", "Subject", "User-Agent", "X-Folded"]), unknown_values),
    max_size=4,
)


def common_headers(
    via_list: list[Via], from_: NameAddr, to: NameAddr, call_id: str, seq: int, method: str
) -> list[tuple[str, str]]:
    pairs = [("Via", str(via)) for via in via_list]
    pairs += [("From", str(from_)), ("To", str(to)), ("Call-ID", call_id)]
    pairs.append(("CSeq", f"{seq} {method}"))
    return pairs


@settings(max_examples=200, deadline=500)
@given(
    method=tokens,
    uri=sip_uris,
    via_list=st.lists(vias, min_size=1, max_size=3),
    from_=name_addrs,
    to=name_addrs,
    call_id=tokens,
    seq=st.integers(min_value=0, max_value=2**31 - 1),
    extra=extra_headers,
    body=st.binary(max_size=300),
)
def test_generated_requests_round_trip(
    method: str,
    uri: SipUri,
    via_list: list[Via],
    from_: NameAddr,
    to: NameAddr,
    call_id: str,
    seq: int,
    extra: list[tuple[str, str]],
    body: bytes,
) -> None:
    pairs = common_headers(via_list, from_, to, call_id, seq, method)
    pairs += [("Max-Forwards", "70"), *extra]
    request = SipRequest(method=method, uri=uri, headers=Headers.of(pairs), body=body)
    parsed = parse_message(bytes(request))
    assert parsed == request
    assert parsed.vias == via_list
    assert parsed.from_ == from_
    assert parsed.to == to


@settings(max_examples=150, deadline=500)
@given(
    status=st.integers(min_value=100, max_value=699),
    reason=unknown_values,
    via_list=st.lists(vias, min_size=1, max_size=3),
    from_=name_addrs,
    to=name_addrs,
    call_id=tokens,
    seq=st.integers(min_value=0, max_value=2**31 - 1),
    method=tokens,
    body=st.binary(max_size=200),
)
def test_generated_responses_round_trip(
    status: int,
    reason: str,
    via_list: list[Via],
    from_: NameAddr,
    to: NameAddr,
    call_id: str,
    seq: int,
    method: str,
    body: bytes,
) -> None:
    headers = Headers.of(common_headers(via_list, from_, to, call_id, seq, method))
    response = SipResponse(status=status, reason=reason, headers=headers, body=body)
    assert parse_message(bytes(response)) == response


@settings(max_examples=200, deadline=500)
@given(display=display_names.filter(lambda d: d is not None), uri=sip_uris)
def test_display_names_survive_quoting(display: str, uri: SipUri) -> None:
    addr = NameAddr(uri=uri, display_name=display)
    assert NameAddr.parse(str(addr)) == addr
    assert str(addr).startswith(quote_string(display))


# --- stream framing ---------------------------------------------------


@settings(max_examples=150, deadline=1000)
@given(
    picks=st.lists(st.integers(min_value=0, max_value=len(SERIALISED) - 1), min_size=1, max_size=6),
    keepalives=st.lists(st.integers(min_value=0, max_value=2), min_size=6, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30),
)
def test_framer_any_chunking_yields_the_same_messages(
    picks: list[int], keepalives: list[int], cuts: list[int]
) -> None:
    messages = [SERIALISED[index] for index in picks]
    stream = b"".join(b"\r\n\r\n" * keepalives[i] + message for i, message in enumerate(messages))
    bounds = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    framer = StreamFramer()
    frames: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        frames.extend(framer.feed(stream[start:end]))
    assert frames == messages
    assert [parse_message(frame) for frame in frames] == [parse_message(m) for m in messages]


@FUZZ
@given(st.lists(st.binary(max_size=512), max_size=8))
def test_framer_on_random_bytes_frames_or_raises(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_size=4096)
    error: SipParseError | None = None
    try:
        for chunk in chunks:
            for frame in framer.feed(chunk):
                assert len(frame) <= 4096
                check_contract(frame)
    except SipParseError as exc:
        error = exc
    if error is not None:
        assert error.status_code in ALLOWED_STATUSES
