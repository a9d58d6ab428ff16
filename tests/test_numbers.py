"""Recipient numbers: accepted forms to exact E.164, rejection codes, regions, mask().

Expected values are written out by hand; invisible and non-ASCII characters are
spelled as escapes so the input is visible in the source.
"""

from __future__ import annotations

import re

import pytest

from faxd.errors import CODES, ConfigError, ValidationError
from faxd.numbers import GERMAN_SPECIAL_PREFIXES, mask, to_e164

P = pytest.param

ACCEPTED = [
    # international, with the usual separators
    P("+49 30 123456", "DE", "+4930123456", id="plus-spaces"),
    P("+4930123456", None, "+4930123456", id="plus-compact"),
    P("+49-30-123456", None, "+4930123456", id="plus-dashes"),
    P("+49.30.123456", None, "+4930123456", id="plus-dots"),
    P("+49/30/123456", None, "+4930123456", id="plus-slashes"),
    P("+49 (30) 123456", None, "+4930123456", id="plus-parentheses"),
    P("+49 (0)30 123456", None, "+4930123456", id="plus-bracketed-trunk"),
    P("+49 (0) 30 123456", "DE", "+4930123456", id="plus-bracketed-trunk-spaced"),
    P("+49 030 123456", "DE", "+4930123456", id="plus-with-trunk"),
    P("+49 30 123456-78", "DE", "+493012345678", id="direct-dial-suffix"),
    # national (trunk prefix) and 00
    P("030 123456", "DE", "+4930123456", id="national-spaces"),
    P("030123456", "DE", "+4930123456", id="national-compact"),
    P("030-123456", "DE", "+4930123456", id="national-dash"),
    P("030/123456", "DE", "+4930123456", id="national-slash"),
    P("030 / 12 34 56", "DE", "+4930123456", id="national-slash-groups"),
    P("(030) 123456", "DE", "+4930123456", id="national-parentheses"),
    P("030.123.456", "DE", "+4930123456", id="national-dots"),
    P("0049 30 123456", "DE", "+4930123456", id="00-with-region"),
    P("00 49 30 123456", None, "+4930123456", id="00-without-region"),
    P("0049 (0)30 123456", "DE", "+4930123456", id="00-bracketed-trunk"),
    P("0043 1 234567", "DE", "+431234567", id="00-foreign-from-DE"),
    P("+43 1 234567", "DE", "+431234567", id="plus-foreign-from-DE"),
    # RFC 3966 tel: URIs without parameters
    P("tel:+49-30-123456", None, "+4930123456", id="tel-uri"),
    P("TEL:+49.30.123456", "DE", "+4930123456", id="tel-uri-upper-case"),
    P("tel:+4930123456", "DE", "+4930123456", id="tel-uri-compact"),
    P("tel:+49(30)123456", "DE", "+4930123456", id="tel-uri-parentheses"),
    # Unicode digits and full-width punctuation
    P(
        "\uff10\uff13\uff10 \uff11\uff12\uff13\uff14\uff15\uff16",
        "DE",
        "+4930123456",
        id="full-width-national",
    ),
    P(
        "\uff0b\uff14\uff19 \uff13\uff10 \uff11\uff12\uff13\uff14\uff15\uff16",
        None,
        "+4930123456",
        id="full-width-plus",
    ),
    P("\uff08030\uff09 123456", "DE", "+4930123456", id="full-width-parentheses"),
    P("030\uff0d123456", "DE", "+4930123456", id="full-width-hyphen"),
    P("030\uff0f123456", "DE", "+4930123456", id="full-width-slash"),
    P(
        "\u0660\u0663\u0660 \u0661\u0662\u0663\u0664\u0665\u0666",
        "DE",
        "+4930123456",
        id="arabic-indic-digits",
    ),
    P(
        "+\u0664\u0669 \u0663\u0660 \u0661\u0662\u0663\u0664\u0665\u0666",
        None,
        "+4930123456",
        id="arabic-indic-plus",
    ),
    P(
        "\u06f0\u06f3\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6",
        "DE",
        "+4930123456",
        id="persian-digits",
    ),
    P(
        "\u0966\u0969\u0966 \u0967\u0968\u0969\u096a\u096b\u096c",
        "DE",
        "+4930123456",
        id="devanagari-digits",
    ),
    # whitespace and invisible copy-paste characters
    P("  +49 30 123456  ", None, "+4930123456", id="surrounding-spaces"),
    P("\t030 123456\r\n", "DE", "+4930123456", id="tab-and-newline"),
    P("\u00a0+49\u00a030\u00a0123456\u00a0", None, "+4930123456", id="nbsp"),
    P("+49\u202f30\u202f123456", None, "+4930123456", id="narrow-nbsp"),
    P("+49\u200930\u2009123456", None, "+4930123456", id="thin-space"),
    P("\u3000030 123456\u3000", "DE", "+4930123456", id="ideographic-space"),
    P("\u200b+49 30 123456\u200b", None, "+4930123456", id="zero-width-space"),
    P("\u200e+49 30 123456\u200e", None, "+4930123456", id="lrm"),
    P("\u200f+49 30 123456\u200f", None, "+4930123456", id="rlm"),
    P("\ufeff+49 30 123456", None, "+4930123456", id="bom"),
    P("\u2066+49 30 123456\u2069", None, "+4930123456", id="bidi-isolates"),
    P("\u202a+49 30 123456\u202c", None, "+4930123456", id="bidi-embedding"),
    P("030\u2060123456", "DE", "+4930123456", id="word-joiner"),
    P("030\u00ad123456", "DE", "+4930123456", id="soft-hyphen"),
    P(
        "+\u200b4\u200b9\u200b3\u200b0\u200b1\u200b2\u200b3\u200b4\u200b5\u200b6",
        None,
        "+4930123456",
        id="zero-width-between-digits",
    ),
    P("030\u2013123456", "DE", "+4930123456", id="en-dash"),
    P("030\u2014123456", "DE", "+4930123456", id="em-dash"),
    P("030\u2011123456", "DE", "+4930123456", id="non-breaking-hyphen"),
    P("030\u2212123456", "DE", "+4930123456", id="minus-sign"),
    # allowed number types
    P("0151 23456789", "DE", "+4915123456789", id="mobile"),
    P("0800 1234567", "DE", "+498001234567", id="toll-free-de"),
    P("+800 1234 5678", None, "+80012345678", id="toll-free-international"),
    P("01805 123456", "DE", "+491805123456", id="shared-cost-de-0180"),
    P("+44 300 123 4567", None, "+443001234567", id="uan-gb-03"),
    P("+44 56 1234 5678", None, "+445612345678", id="voip-gb"),
    P("0780 123456", "AT", "+43780123456", id="voip-at"),
    # regions
    P("030 123456", "de", "+4930123456", id="region-lower-case"),
    P("030 123456", "De", "+4930123456", id="region-mixed-case"),
    P("030 123456", " DE ", "+4930123456", id="region-padded"),
    P("01 234567", "AT", "+431234567", id="region-at"),
    P("(202) 555-0123", "US", "+12025550123", id="region-us"),
    P("202-555-0123", "us", "+12025550123", id="region-us-lower"),
    P("1 202 555 0123", "US", "+12025550123", id="region-us-with-1"),
    P("011 49 30 123456", "US", "+4930123456", id="region-us-idd-011"),
    P("+1 202 555 0123", None, "+12025550123", id="us-without-region"),
    P("020 7946 0000", "GB", "+442079460000", id="region-gb"),
    P("00 49 30 123456", "GB", "+4930123456", id="region-gb-idd-00"),
    P("06 1234 5678", "IT", "+390612345678", id="region-it-leading-zero"),
    P("+39 06 1234 5678", None, "+390612345678", id="italian-leading-zero-kept"),
    # German special prefixes apply to +49 only
    P("+44 121 212 3456", None, "+441212123456", id="birmingham-starts-1212"),
    P("+44 1382 123456", None, "+441382123456", id="dundee-starts-138"),
]

REJECTED = [
    # number_empty
    P("", "DE", "number_empty", id="empty"),
    P("   ", "DE", "number_empty", id="blank"),
    P("\t\r\n", "DE", "number_empty", id="whitespace"),
    P("\u200b\u200e\ufeff", "DE", "number_empty", id="only-invisible"),
    P("tel:", "DE", "number_empty", id="bare-tel-scheme"),
    P("---", "DE", "number_empty", id="only-separators"),
    P("( )", None, "number_empty", id="only-parentheses"),
    # number_has_letters
    P("0800-FLOWERS", "DE", "number_has_letters", id="vanity-de"),
    P("1-800-FLOWERS", "US", "number_has_letters", id="vanity-us"),
    P("Fax: +49 30 123456", "DE", "number_has_letters", id="label-fax"),
    P("fax:+4930123456", "DE", "number_has_letters", id="label-fax-no-space"),
    P("FAX +49 30 123456", "DE", "number_has_letters", id="label-fax-upper"),
    P("Tel.: 030 123456", "DE", "number_has_letters", id="label-tel-dot"),
    P("tel: +49 30 123456", "DE", "number_has_letters", id="label-tel-space"),
    P("+49 30 12345O", "DE", "number_has_letters", id="letter-o-for-zero"),
    P("+49 30 l23456", "DE", "number_has_letters", id="letter-l-for-one"),
    P("+49 30 123456 (B\u00fcro)", "DE", "number_has_letters", id="trailing-note"),
    P("\uff26\uff41\uff58: 030 123456", "DE", "number_has_letters", id="wide-label"),
    P("sip:+4930123456@sipgate.de", None, "number_has_letters", id="sip-uri"),
    P("callto:+4930123456", None, "number_has_letters", id="callto-uri"),
    # number_has_extension
    P("+49 30 123456 ext. 12", "DE", "number_has_extension", id="ext-dot"),
    P("+49 30 123456 ext 12", "DE", "number_has_extension", id="ext-space"),
    P("+49 30 123456 Ext.12", "DE", "number_has_extension", id="ext-capital"),
    P("+49 30 123456 EXT: 12", "DE", "number_has_extension", id="ext-colon"),
    P("+49 30 123456 extension 12", "DE", "number_has_extension", id="extension"),
    P("+49 30 123456 x12", "DE", "number_has_extension", id="x-spaced"),
    P("+49 30 123456x12", "DE", "number_has_extension", id="x-glued"),
    P("+49 30 123456 x 12", "DE", "number_has_extension", id="x-space-digits"),
    P("+49 30 123456 X12", "DE", "number_has_extension", id="x-capital"),
    P("+49 30 123456;ext=12", "DE", "number_has_extension", id="semicolon-ext"),
    P("tel:+49-30-123456;ext=12", "DE", "number_has_extension", id="tel-uri-ext"),
    P("+49 30 123456#12", "DE", "number_has_extension", id="hash"),
    P("+49 30 123456 # 12", "DE", "number_has_extension", id="hash-spaced"),
    P("+49 30 123456,,12", "DE", "number_has_extension", id="dialler-pause"),
    P("+49 30 123456;12", "DE", "number_has_extension", id="dialler-wait"),
    P("030 123456 Durchwahl 12", "DE", "number_has_extension", id="durchwahl"),
    P("030 123456 DW 12", "DE", "number_has_extension", id="dw"),
    P("030 123456 App. 12", "DE", "number_has_extension", id="apparat"),
    P("Fax: +49 30 123456 ext. 12", "DE", "number_has_extension", id="label-and-ext"),
    # number_too_short
    P("123456", "DE", "number_too_short", id="six-digits"),
    P("12 34 56", "DE", "number_too_short", id="six-digits-spaced"),
    P("+49 30 12", None, "number_too_short", id="six-digits-international"),
    P("030 12", "DE", "number_too_short", id="five-digits"),
    P("112", "DE", "number_too_short", id="emergency"),
    P("tel:+4930", None, "number_too_short", id="tel-uri-short"),
    P("+1 202 555 01", None, "number_too_short", id="short-for-country"),
    # number_invalid
    P("+49 1 2345 6789", None, "number_invalid", id="no-such-german-number"),
    P("+999 123456789", None, "number_invalid", id="unknown-country-code"),
    P("+0049 30 123456", None, "number_invalid", id="plus-and-00"),
    P("+49 30 1234567890123456", None, "number_invalid", id="too-long"),
    P("0049 30 123456", "US", "number_invalid", id="00-is-not-us-idd"),
    P("30 123456", "DE", "number_invalid", id="national-without-trunk"),
    P("8912345", "DE", "number_invalid", id="local-number-without-area"),
    P("4930123456", "DE", "number_invalid", id="country-code-without-plus"),
    P("+49 30 123456\u00b2", "DE", "number_invalid", id="superscript-digit"),
    P("+49 30 12345\u2460", "DE", "number_invalid", id="circled-digit"),
    P("*31#030123456", "DE", "number_invalid", id="star-code"),
    P("#31#+4930123456", "DE", "number_invalid", id="hash-code"),
    P("+49 30 123456!", "DE", "number_invalid", id="exclamation"),
    P("+49_30_123456", "DE", "number_invalid", id="underscore"),
    P("+49 30 123456 \U0001f4e0", "DE", "number_invalid", id="emoji"),
    P("49+30123456", "DE", "number_invalid", id="plus-inside"),
    P("++49 30 123456", "DE", "number_invalid", id="double-plus"),
    P("+49 30 123456 / +49 30 654321", "DE", "number_invalid", id="two-numbers"),
    P("030 123456, 030 654321", "DE", "number_invalid", id="two-numbers-comma"),
    P("tel:030123456", "DE", "number_invalid", id="tel-uri-local"),
    P(
        "tel:+49-30-123456;phone-context=example.com",
        "DE",
        "number_invalid",
        id="tel-uri-phone-context",
    ),
    P("tel:+4930123456;isub=1", "DE", "number_invalid", id="tel-uri-isub"),
    P("1" * 300, "DE", "number_invalid", id="huge-input"),
    # number_region_required
    P("030 123456", None, "number_region_required", id="national-no-region"),
    P("(030) 123456", None, "number_region_required", id="national-parens-no-region"),
    P("0151 23456789", None, "number_region_required", id="mobile-no-region"),
    P("202-555-0123", None, "number_region_required", id="us-national-no-region"),
    P("011 49 30 123456", None, "number_region_required", id="011-no-region"),
    # number_premium: German special-service prefixes, then the premium-rate type
    P("0900 1 234567", "DE", "number_premium", id="de-900"),
    P("+49 900 3 123456", None, "number_premium", id="de-900-international"),
    P("01212 123456789", "DE", "number_premium", id="de-1212"),
    P("+49 1212 123456789", None, "number_premium", id="de-1212-international"),
    P("01807 123456", "DE", "number_premium", id="de-1807"),
    P("0181 1234567", "DE", "number_premium", id="de-181"),
    P("+49 185 00123456", None, "number_premium", id="de-185"),
    P("+49 188 00123456", None, "number_premium", id="de-188"),
    P("+1 900 234 5678", None, "number_premium", id="us-900"),
    P("+44 909 879 0000", None, "number_premium", id="gb-09"),
    P("0900 123456", "AT", "number_premium", id="at-0900"),
    P("+979 1234 56789", None, "number_premium", id="international-premium"),
    # number_mass_call
    P("0137 1 234567", "DE", "number_mass_call", id="de-137"),
    P("+49 137 7123456", None, "number_mass_call", id="de-137-premium-typed"),
    P("0138 1234", "DE", "number_mass_call", id="de-138"),
    P("+49 138 1234", None, "number_mass_call", id="de-138-international"),
    # number_personal
    P("0700 12345678", "DE", "number_personal", id="de-0700"),
    P("+44 70 1234 5678", None, "number_personal", id="gb-070"),
    P("+1 500 234 5678", None, "number_personal", id="us-500"),
    # number_pager
    P("+49 168 123456", None, "number_pager", id="de-pager"),
    P("+44 76 2345 6789", None, "number_pager", id="gb-pager"),
    P("+41 74 012 34 56", None, "number_pager", id="ch-pager"),
    # number_voicemail
    P("+49 177 99 1234567", None, "number_voicemail", id="de-mailbox"),
    P("+41 860 12 345 67 89", None, "number_voicemail", id="ch-voicemail"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), ACCEPTED)
def test_accepted_forms(raw: str, region: str | None, expected: str) -> None:
    """Each accepted way of typing a number gives exactly this E.164 string."""
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(("raw", "region", "code"), REJECTED)
def test_rejections(raw: str, region: str | None, code: str) -> None:
    """Each refused input raises ValidationError with its own, caller-fault code."""
    with pytest.raises(ValidationError) as caught:
        to_e164(raw, region)
    assert caught.value.code == code
    assert caught.value.fault == "caller"


@pytest.mark.parametrize(("raw", "region", "code"), REJECTED)
def test_rejection_messages_are_short_and_do_not_echo(
    raw: str, region: str | None, code: str
) -> None:
    """A message is one sentence and never repeats four digits in a row of the input."""
    with pytest.raises(ValidationError) as caught:
        to_e164(raw, region)
    message = caught.value.message
    assert message.endswith(".")
    assert "\n" not in message
    assert len(message) <= 200
    assert re.search(r"[0-9]{4}", message) is None


def test_every_number_code_is_exercised() -> None:
    """Every registered number_* code has at least one rejection case in this file."""
    registered = {code for code in CODES if code.startswith("number_")}
    assert {case.values[2] for case in REJECTED} == registered


@pytest.mark.parametrize(
    ("raw", "region", "code", "shown"),
    [
        ("0900 1 234567", "DE", "number_premium", "+49********67"),
        ("0137 1 234567", "DE", "number_mass_call", "+49********67"),
        ("0700 12345678", "DE", "number_personal", "+49*********78"),
        ("+49 168 123456", None, "number_pager", "+49*******56"),
        ("+49 177 99 1234567", None, "number_voicemail", "+49**********67"),
    ],
)
def test_type_rejections_name_the_masked_number(
    raw: str, region: str | None, code: str, shown: str
) -> None:
    """Refusals by number type show the number masked, so a reader knows which one."""
    with pytest.raises(ValidationError) as caught:
        to_e164(raw, region)
    assert caught.value.code == code
    assert shown in caught.value.message


def test_german_special_prefixes_follow_sipgate() -> None:
    """The +49 prefix list is sipgate's section-6 list; 137 and 138 are mass-call."""
    assert GERMAN_SPECIAL_PREFIXES == {
        "137": "number_mass_call",
        "138": "number_mass_call",
        "900": "number_premium",
        "1212": "number_premium",
        "1807": "number_premium",
        "181": "number_premium",
        "185": "number_premium",
        "188": "number_premium",
    }


@pytest.mark.parametrize("region", ["XX", "ZZ", "DEU", "001", "D", "", "  "])
def test_unknown_region_is_a_config_error(region: str) -> None:
    """A region phonenumbers does not know is the operator's error, naming the value."""
    with pytest.raises(ConfigError) as caught:
        to_e164("+49 30 123456", region)
    assert repr(region) in caught.value.message
    assert caught.value.code == "config_invalid"


def test_region_is_checked_before_the_number() -> None:
    """A bad region is reported even when the number is bad too."""
    with pytest.raises(ConfigError):
        to_e164("", "XX")


@pytest.mark.parametrize(
    ("value", "code"), [(None, "number_empty"), (4930123456, "number_invalid")]
)
def test_non_text_input_is_refused(value: object, code: str) -> None:
    """None or a bare integer (e.g. from JSON) is refused, not crashed on."""
    with pytest.raises(ValidationError) as caught:
        to_e164(value, "DE")  # type: ignore[arg-type]
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        P("+4930123456", "+49******56", id="german-fixed-line"),
        P("+4915123456789", "+49*********89", id="german-mobile"),
        P("+12025550123", "+12*******23", id="us"),
        P("+4912345", "+49***45", id="seven-digits"),
        P("+491234", "*******", id="six-digits-fully-masked"),
        P("+4912", "*****", id="four-digits-fully-masked"),
        P("+1234567890123456", "****************", id="over-15-digits-capped"),
        P("  +4930123456\n", "+49******56", id="surrounding-whitespace"),
        P("030 123456", "**********", id="not-e164-fully-masked"),
        P("+\uff14\uff1930123456", "***********", id="non-ascii-digits-masked"),
        P("Fax: +49 30 123456", "****************", id="raw-input-capped"),
        P("x" * 1000, "****************", id="huge-capped"),
        P("", "", id="empty"),
    ],
)
def test_mask(number: str, masked: str) -> None:
    """mask() keeps + and the first and last two digits of E.164, else hides all."""
    assert mask(number) == masked


@pytest.mark.parametrize("value", [None, 4930123456, b"+4930123456"])
def test_mask_never_raises(value: object) -> None:
    """mask() answers three stars for anything that is not text instead of raising."""
    assert mask(value) == "***"  # type: ignore[arg-type]
