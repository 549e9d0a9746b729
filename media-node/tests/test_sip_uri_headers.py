"""Unit tests for SIP URIs, structured header values and the Headers container."""

from __future__ import annotations

import pytest

from vpbx_media.sip.errors import SipParseError
from vpbx_media.sip.headers import CSeq, NameAddr, Via, canonical_name, split_list
from vpbx_media.sip.message import Header, Headers
from vpbx_media.sip.uri import AbsoluteUri, SipUri, is_ascii_digits, parse_host_port, parse_uri

# --- SipUri ---------------------------------------------------------------


def test_sip_uri_parts_and_canonical_text() -> None:
    uri = SipUri.parse("SIPS:alice:secret@Example.COM:5061;transport=TCP;lr?subject=hi")
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Example.COM", 5061)
    assert uri.params == (("transport", "TCP"), ("lr", None))
    assert uri.headers == "subject=hi"
    assert uri.transport == "tcp"
    assert str(uri) == "sips:alice:secret@Example.COM:5061;transport=TCP;lr?subject=hi"
    assert SipUri.parse(str(uri)) == uri


def test_sip_uri_defaults_and_param_helpers() -> None:
    uri = SipUri.parse("sip:example.com")
    assert uri.user is None
    assert uri.port is None
    assert uri.transport == "udp"
    edited = uri.with_params(transport="tcp", lr=None)
    assert str(edited) == "sip:example.com;transport=tcp;lr"
    assert edited.param("LR") == ""
    assert edited.param("maddr") is None
    assert str(edited.without_param("TRANSPORT")) == "sip:example.com;lr"


def test_sip_uri_escaped_user_is_kept_and_unescaped_on_request() -> None:
    uri = SipUri.parse("sip:I%20have%20spaces@example.net")
    assert uri.user == "I%20have%20spaces"
    assert uri.user_unescaped == "I have spaces"


def test_sip_uri_ipv6_host() -> None:
    uri = SipUri.parse("sip:bob@[2001:db8::10]:5070")
    assert (uri.host, uri.port) == ("[2001:db8::10]", 5070)


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "tel:+123",
        "sip:user@",
        "sip:us er@example.com",
        "sip:user@exa mple.com",
        'sip:"quoted"@example.com',
        "sip:example.com:65536",
        "sip:example.com:５０６０",
        "sip:example.com:٥٠",
        "sip:256.1.1.1",
        "sip:[::1",
        "sip:example.com;=v",
        "sip:example.com;p=",
        "sip:-bad-.com",
    ],
)
def test_malformed_sip_uris_raise(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_absolute_uris_are_kept_verbatim() -> None:
    uri = parse_uri("TEL:+1-201-555-0123")
    assert isinstance(uri, AbsoluteUri)
    assert uri.scheme == "tel"
    assert str(uri) == "TEL:+1-201-555-0123"
    assert isinstance(parse_uri("sip:a@b"), SipUri)
    for bad in ("noscheme", "1x:abc", "x:", "x:a b", "x:<a>"):
        with pytest.raises(SipParseError):
            parse_uri(bad)


def test_host_port_and_digits_helpers() -> None:
    assert parse_host_port("192.0.2.1:5060") == ("192.0.2.1", 5060)
    assert parse_host_port("[::1]") == ("[::1]", None)
    assert is_ascii_digits("0123")
    assert not is_ascii_digits("")
    assert not is_ascii_digits("١٢")
    with pytest.raises(SipParseError):
        parse_host_port("[::1]x")


# --- NameAddr -------------------------------------------------------------


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"Alice \\"A\\" Smith" <sip:alice@example.com>;tag=1234;x')
    assert quoted.display_name == 'Alice "A" Smith'
    assert quoted.tag == "1234"
    assert quoted.param("x") == ""
    tokens = NameAddr.parse("Bob  Jones <sip:bob@example.com>")
    assert tokens.display_name == "Bob Jones"
    bare = NameAddr.parse("sip:carol@example.com;tag=9")
    assert bare.display_name is None
    assert bare.tag == "9"
    assert isinstance(bare.uri, SipUri)
    assert bare.uri.params == ()


def test_name_addr_str_is_canonical_and_reparses() -> None:
    addr = NameAddr.parse("Bob <sip:bob@example.com;transport=tcp> ; tag = 77")
    assert str(addr) == '"Bob" <sip:bob@example.com;transport=tcp>;tag=77'
    assert NameAddr.parse(str(addr)) == addr


def test_name_addr_with_tag_replaces_existing_tag() -> None:
    addr = NameAddr.parse("<sip:a@example.com>;tag=old")
    assert addr.with_tag("new").tag == "new"
    assert str(addr.with_tag("new")) == "<sip:a@example.com>;tag=new"


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"unterminated <sip:a@example.com>',
        '"quoted" sip:a@example.com',
        "Bell, Alexander <sip:a@example.com>",
        "< sip:a@example.com >",
        "<sip:a@example.com",
        "sip:a@example.com?Route=x",
        "<sip:a@example.com>;tag=",
        "<sip:a@example.com> junk",
    ],
)
def test_malformed_addresses_raise(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


# --- Via ------------------------------------------------------------------


def test_via_parse_and_str() -> None:
    via = Via.parse("SIP / 2.0 / udp  192.0.2.1 : 5060 ;branch=z9hG4bK1;received=10.0.0.1;rport")
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5060)
    assert via.branch == "z9hG4bK1"
    assert via.param("rport") == ""
    assert str(via) == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=10.0.0.1;rport"
    assert Via.parse(str(via)) == via


def test_via_ipv6_and_with_params() -> None:
    via = Via.parse("SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx")
    assert (via.host, via.port) == ("[2001:db8::1]", 5061)
    stamped = via.with_params(received="2001:db8::2", rport="5062")
    assert stamped.param("received") == "2001:db8::2"
    assert stamped.param("rport") == "5062"


@pytest.mark.parametrize(
    "text",
    ["SIP/2.0/UDP", "SIP/2.0 192.0.2.1", "SIP/2.0/UDP 192.0.2.1;;", "SIP/2.0/UDP h:99999"],
)
def test_malformed_vias_raise(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


# --- CSeq -----------------------------------------------------------------


def test_cseq_parse_and_str() -> None:
    cseq = CSeq.parse("  0009 \t INVITE ")
    assert (cseq.seq, cseq.method) == (9, "INVITE")
    assert str(cseq) == "9 INVITE"
    assert CSeq.parse(f"{2**31 - 1} ACK").seq == 2**31 - 1


@pytest.mark.parametrize("text", ["", "1", "INVITE 1", "-1 INVITE", f"{2**31} INVITE", "١ INVITE"])
def test_malformed_cseq_raises(text: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(text)


# --- split_list / canonical_name --------------------------------------------


def test_split_list_respects_quotes_and_brackets() -> None:
    value = '"Doe, John" <sip:j@x.com;a=1,2>, <sip:k@y.com> ,sip:l@z.com'
    assert split_list(value) == [
        '"Doe, John" <sip:j@x.com;a=1,2>',
        "<sip:k@y.com>",
        "sip:l@z.com",
    ]
    assert split_list('"a \\" , b", c') == ['"a \\" , b"', "c"]


@pytest.mark.parametrize("value", ["a,,b", ",a", "a,", '"open, b', "<sip:a@b, c"])
def test_split_list_rejects_empty_and_unterminated(value: str) -> None:
    with pytest.raises(SipParseError):
        split_list(value)


def test_canonical_names() -> None:
    assert canonical_name("v") == "Via"
    assert canonical_name("CALL-id") == "Call-ID"
    assert canonical_name("cseq") == "CSeq"
    assert canonical_name("x-my-header") == "X-My-Header"
    assert canonical_name("NewFangledHeader") == "NewFangledHeader"


# --- Headers --------------------------------------------------------------


def sample_headers() -> Headers:
    return Headers.of(
        [
            ("v", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com"),
            ("Via", "SIP/2.0/UDP c.example.com"),
            ("f", "<sip:a@example.com>;tag=1"),
            ("X-Custom", "one"),
        ]
    )


def test_headers_lookup_is_case_insensitive_and_knows_compact_forms() -> None:
    headers = sample_headers()
    assert headers.items[0] == Header("Via", headers.items[0].value)
    assert headers.get("FROM") == "<sip:a@example.com>;tag=1"
    assert headers.get("x-custom") == "one"
    assert "V" in headers
    assert "Route" not in headers
    assert len(headers.lines("via")) == 2
    assert headers.values("Via") == [
        "SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        "SIP/2.0/UDP b.example.com",
        "SIP/2.0/UDP c.example.com",
    ]
    assert headers.values("X-CUSTOM") == ["one"]
    assert len(headers) == 4


def test_headers_add_prepend_remove_set() -> None:
    headers = sample_headers()
    added = headers.add("x-custom", "two")
    assert added.lines("X-Custom") == ["one", "two"]
    prepended = headers.prepend("Via", "SIP/2.0/TCP top.example.com")
    assert prepended.values("Via")[0] == "SIP/2.0/TCP top.example.com"
    assert prepended.items[0].name == "Via"
    new_first = headers.prepend("Route", "<sip:r@example.com;lr>")
    assert new_first.items[0] == Header("Route", "<sip:r@example.com;lr>")
    assert headers.remove("VIA").lines("Via") == []
    replaced = headers.set("Via", "SIP/2.0/UDP only.example.com")
    assert replaced.lines("Via") == ["SIP/2.0/UDP only.example.com"]
    assert replaced.items[0].name == "Via"
    assert headers.set("Subject", "hi").items[-1] == Header("Subject", "hi")
    # The original is untouched: Headers is immutable.
    assert headers == sample_headers()


def test_headers_replace_values_and_pop_first_value() -> None:
    headers = sample_headers()
    top, rest = headers.pop_first_value("Via")
    assert top == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"
    assert rest.values("Via") == ["SIP/2.0/UDP b.example.com", "SIP/2.0/UDP c.example.com"]
    assert rest.items[0].name == "Via"
    assert headers.remove("Via").pop_first_value("Via") == (None, headers.remove("Via"))
    rewritten = headers.replace_values("Via", ["SIP/2.0/UDP x", "SIP/2.0/UDP y"])
    assert [h.value for h in rewritten.items[:2]] == ["SIP/2.0/UDP x", "SIP/2.0/UDP y"]
    assert rewritten.replace_values("Route", ["<sip:r>"]).items[-1] == Header("Route", "<sip:r>")
