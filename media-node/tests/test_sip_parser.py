"""RFC 4475 torture messages against the SIP parser.

The fixtures are the RFC's messages with CRLF line ends, <allOneLine> runs
joined, <repeat> runs expanded and <hex> runs written as the raw octets (NUL,
BEL, DEL, UTF-8, the DER blob in mpart01); Content-Length matches the body
wherever the RFC means it to. Every fixture in fixtures/rfc4475/ is
classified here: the ones the parser must accept (and round-trip) and the ones
it must reject with a given status. The classification follows each test's
"expected behaviour" text in RFC 4475:

* 3.1.1 (valid syntax), 3.2 (transaction layer) and 3.4 (RFC 2543 syntax) must
  parse.
* 3.1.2 (invalid syntax) must raise `SipParseError`; where the RFC lets an
  element be liberal (lwsstart, trws, baddate, escruri, regbadct, badaspec),
  this parser takes the strict choice the RFC also allows.
* 3.3 (application layer) messages are well-formed SIP, so they parse; the
  error the RFC describes (416 for an unknown Request-URI scheme, 420 for an
  unknown Require, 415 for an unknown body type...) is the application's to
  send. The exceptions are insuf, multi01 and mcl01: missing or repeated
  mandatory headers and two Content-Lengths are errors of the message itself,
  answered 400 by the parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vpbx_media.sip.errors import MessageTooLarge, SipParseError
from vpbx_media.sip.headers import NameAddr
from vpbx_media.sip.message import SipRequest, SipResponse, StreamFramer, parse_message
from vpbx_media.sip.uri import AbsoluteUri, SipUri

FIXTURES = Path(__file__).parent / "fixtures" / "rfc4475"

VALID = (
    # 3.1.1 valid messages
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    # 3.2 transaction layer: the parser must not break on an empty branch id.
    "badbranch",
    # 3.3 application layer semantics of well-formed messages
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    # 3.4 backward compatibility
    "inv2543",
)

# name -> (status, words the reason must contain)
INVALID: dict[str, tuple[int, str]] = {
    "badinv01": (400, "empty element"),
    # Over UDP a Content-Length beyond the datagram is a 400 (RFC 4475 3.1.2.2).
    "clerr": (400, "Content-Length 9999"),
    "ncl": (400, "Content-Length '-999'"),
    "scalar02": (400, "CSeq number"),
    # A response is never answered; the caller drops it on SipParseError.
    "scalarlg": (400, "CSeq number"),
    "quotbal": (400, "unterminated quoted string"),
    "ltgtruri": (400, "malformed URI"),
    "lwsruri": (400, "malformed start line"),
    "lwsstart": (400, "malformed start line"),
    "trws": (400, "malformed start line"),
    "escruri": (400, "URI headers"),
    "baddate": (400, "Date"),
    "regbadct": (400, "invalid address"),
    "badaspec": (400, "whitespace inside URI"),
    "baddn": (400, "display name"),
    "badvers": (505, "SIP/7.0"),
    "mismatch01": (400, "does not match"),
    # RFC 4475 prefers 501 here but allows 400; only the application knows
    # which methods it implements.
    "mismatch02": (400, "does not match"),
    "bigcode": (400, "malformed start line"),
    # 3.3 messages broken at the message level
    "insuf": (400, "missing"),
    "multi01": (400, "more than one"),
    "mcl01": (400, "more than one Content-Length"),
}


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.sip").read_bytes()


def request(name: str) -> SipRequest:
    message = parse_message(load(name))
    assert isinstance(message, SipRequest)
    return message


def response(name: str) -> SipResponse:
    message = parse_message(load(name))
    assert isinstance(message, SipResponse)
    return message


def test_every_fixture_is_classified() -> None:
    on_disk = {path.stem for path in FIXTURES.glob("*.sip")}
    assert on_disk == set(VALID) | set(INVALID)
    assert len(on_disk) == 49


@pytest.mark.parametrize("name", VALID)
def test_valid_message_parses_and_round_trips(name: str) -> None:
    message = parse_message(load(name))
    wire = bytes(message)
    again = parse_message(wire)
    assert again == message
    assert bytes(again) == wire


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_message_is_rejected_with_status(name: str) -> None:
    status, words = INVALID[name]
    with pytest.raises(SipParseError) as caught:
        parse_message(load(name))
    assert caught.value.status_code == status
    assert words in caught.value.reason


def test_wsinv_folding_compact_forms_and_odd_whitespace() -> None:
    msg = request("wsinv")
    assert msg.method == "INVITE"
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.params == (("unknownparam", None),)
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    assert msg.cseq.seq == 9
    assert msg.cseq.method == "INVITE"
    assert msg.max_forwards == 68
    assert msg.header("Subject") == ""
    assert msg.header("newfangledheader") == "newfangled value continued newfangled value"
    assert msg.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    (route,) = msg.routes
    assert isinstance(route.uri, SipUri)
    assert route.uri.param("unknownwith") == "value"
    assert len(msg.body) == 150


def test_intmeth_unusual_token_characters_and_binary_values() -> None:
    msg = request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq.method == msg.method
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.param("fromParam''~+*_!.-%") == '"работающий"'
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.header("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escapes_are_kept_and_unescaped_once() -> None:
    msg = request("esc01")
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "sips%3Auser%40example.com"
    assert msg.uri.user_unescaped == "sips:user@example.com"
    assert msg.uri.host == "example.net"
    to_uri = msg.to.uri
    assert isinstance(to_uri, SipUri)
    assert to_uri.user_unescaped == "user"
    (contact,) = msg.contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.params == (("%6C%72", None), ("n%61me", "v%61lue%25%34%31"))
    assert msg.content_type == "application/sdp"


def test_escnull_keeps_distinct_users_with_escaped_nulls() -> None:
    msg = request("escnull")
    users = [c.uri.user_unescaped for c in msg.contacts if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]
    to_uri = msg.to.uri
    assert isinstance(to_uri, SipUri)
    assert to_uri.user_unescaped == "null-\x00-null"


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    msg = request("esc02")
    assert msg.method == "RE%47IST%45R"
    assert msg.to.display_name == "%Z%45"
    assert [str(c.uri) for c in msg.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert msg.header("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"


def test_lwsdisp_display_name_without_space() -> None:
    assert request("lwsdisp").from_.display_name == "caller"


def test_longreq_long_values_and_34_vias() -> None:
    msg = request("longreq")
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[-1].param("received") == "192.0.2.5"
    assert vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert msg.to.display_name == "I have a user name of " + "extreme" * 10 + " proportion"
    to_uri = msg.to.uri
    assert isinstance(to_uri, SipUri)
    assert to_uri.port == 6000
    assert msg.from_.tag == "12" + "982" * 50 + "424"


def test_dblreq_ignores_bytes_after_content_length() -> None:
    msg = request("dblreq")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert b"INVITE" not in bytes(msg)


def test_semiuri_user_part_with_semicolon() -> None:
    msg = request("semiuri")
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "user;par=u%40example.net"
    assert msg.uri.user_unescaped == "user;par=u@example.net"
    assert msg.uri.params == ()
    assert len(msg.headers.values("Accept")) == 6


def test_transports_unknown_transport_token() -> None:
    msg = request("transports")
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_body_with_nulls() -> None:
    msg = request("mpart01")
    assert len(msg.body) == 553
    assert b"\x00" in msg.body
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert msg.top_via.port == 5070
    assert msg.top_via.param("rport") == ""


def test_unreason_utf8_reason_phrase() -> None:
    msg = response("unreason")
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def test_noreason_empty_reason_phrase_keeps_its_space() -> None:
    msg = response("noreason")
    assert (msg.status, msg.reason) == (100, "")
    assert bytes(msg).startswith(b"SIP/2.0 100 \r\n")


def test_unkscm_and_novelsc_parse_but_are_not_sip_uris() -> None:
    unknown = request("unkscm")
    assert isinstance(unknown.uri, AbsoluteUri)
    assert unknown.uri.scheme == "nobodyknowsthisscheme"
    with pytest.raises(SipParseError) as caught:
        _ = unknown.sip_uri
    assert caught.value.status_code == 416
    novel = request("novelsc")
    assert isinstance(novel.uri, AbsoluteUri)
    assert novel.uri.scheme == "soap.beep"
    assert str(novel.uri) == "soap.beep://192.0.2.103:3002"


def test_unksm2_unknown_schemes_in_address_headers() -> None:
    msg = request("unksm2")
    assert isinstance(msg.to.uri, AbsoluteUri)
    assert msg.to.uri.scheme == "isbn"
    assert str(msg.from_.uri) == "http://www.example.com"
    assert [str(c.uri) for c in msg.contacts] == ["name:John_Smith"]


def test_cparam_parameter_belongs_to_header_or_uri() -> None:
    addr_spec = request("cparam01").contacts[0]
    assert addr_spec.params == (("unknownparam", None),)
    assert isinstance(addr_spec.uri, SipUri)
    assert addr_spec.uri.params == ()
    name_addr = request("cparam02").contacts[0]
    assert name_addr.params == ()
    assert isinstance(name_addr.uri, SipUri)
    assert name_addr.uri.params == (("unknownparam", None),)


def test_regescrt_contact_uri_headers_inside_brackets() -> None:
    (contact,) = request("regescrt").contacts
    assert isinstance(contact.uri, SipUri)
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_semantic_oddities_are_left_to_the_application() -> None:
    assert request("badbranch").top_via.branch == "z9hG4bK"
    assert request("zeromf").max_forwards == 0
    assert request("bext01").headers.values("Require") == [
        "nothingSupportsThis",
        "nothingSupportsThisEither",
    ]
    assert request("invut").content_type == "application/unknownformat"
    assert request("sdp01").header("Accept") == "text/nobodyKnowsThis"
    assert request("regaut01").header("Authorization") == ("NoOneKnowsThisScheme opaque-data=here")
    assert [v.host for v in response("bcast").vias] == ["192.0.2.198", "255.255.255.255"]


def test_inv2543_without_content_length_takes_the_datagram_rest() -> None:
    msg = request("inv2543")
    assert msg.body.startswith(b"v=0\r\n")
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert msg.top_via.branch is None
    assert msg.from_.tag is None
    assert msg.header("Max-Forwards") is None
    assert f"Content-Length: {len(msg.body)}\r\n".encode() in bytes(msg)


def test_content_length_is_framing_not_a_header() -> None:
    msg = request("wsinv")
    assert msg.header("Content-Length") is None
    assert bytes(msg).count(b"Content-Length: 150\r\n") == 1


def test_oversized_datagram_is_513() -> None:
    data = load("longreq")
    with pytest.raises(MessageTooLarge) as caught:
        parse_message(data, max_size=len(data) - 1)
    assert caught.value.status_code == 513


def test_clerr_over_a_stream_waits_for_more_data() -> None:
    framer = StreamFramer()
    assert framer.feed(load("clerr")) == []


@pytest.mark.parametrize("name", ["ncl", "mcl01", "inv2543"])
def test_unframeable_stream_messages_raise(name: str) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(load(name))


def test_dblreq_over_a_stream_is_two_messages_then_garbage() -> None:
    # On TCP the "noise" after the REGISTER is a second message; its SDP is
    # 3 bytes longer than its Content-Length: "C\r\n" starts a third head,
    # which cannot be framed once it ends without a Content-Length.
    framer = StreamFramer()
    frames = framer.feed(load("dblreq"))
    assert [parse_message(frame).cseq.method for frame in frames] == ["REGISTER", "INVITE"]
    with pytest.raises(SipParseError):
        framer.feed(b"\r\n")


def test_framer_returns_good_frames_before_raising_on_garbage() -> None:
    framer = StreamFramer()
    good = bytes(parse_message(load("zeromf")))
    assert framer.feed(good + b"garbage\r\n\r\n") == [good]
    with pytest.raises(SipParseError):
        framer.feed(b"")


def test_name_addr_round_trip_of_fixture_addresses() -> None:
    for name in VALID:
        msg = parse_message(load(name))
        for addr in (msg.from_, msg.to, *msg.contacts):
            assert NameAddr.parse(str(addr)) == addr
