"""Recipient numbers: what people type -> E.164, the policy on which numbers faxd calls,
and masking for logs.

:func:`to_e164` is the only place faxd interprets a recipient number; :func:`mask` is
the only way a number reaches a log line. Parsing, validity and number types come from
``phonenumbers``; this module adds only input clean-up, strictness and policy.

Accepted input
    Spaces, ``-`` (and Unicode dashes), ``.``, ``/``, parentheses; ``+``, the region's
    international prefix (``00`` in DE) or, with no default region, ``00``, the ITU
    prefix; the region's trunk prefix (``030 ...``, also ``+49 (0)30 ...``); RFC 3966
    ``tel:+...`` URIs without parameters; any Unicode decimal digits (full-width,
    Arabic-Indic...); surrounding whitespace and invisible format characters anywhere
    (zero-width space, word joiner, LRM/RLM, bidi isolates, BOM, soft hyphen).
    Full-width punctuation and NBSP-like spaces count as their ASCII forms.

Rejected rather than guessed, each with its own code
    ``number_empty``; ``number_has_letters`` (vanity numbers, labels such as ``Fax:``,
    a letter O typed for a zero); ``number_has_extension`` (``ext. 12``, ``x12``,
    ``;ext=12``, ``#12``, dialler pauses ``,12``, German ``Durchwahl``/``App.``: a fax
    machine cannot dial them); ``number_too_short`` (fewer than 7 digits, as sipgate's
    fax printer, or too short for its country); ``number_region_required`` (national
    format with no default region); ``number_invalid`` (not a valid number; other
    symbols such as ``*``, ``#``, superscript digits; ``tel:`` URIs with parameters or
    without ``+``; a country code typed without ``+``/``00``; a national number not
    written the way it is dialled in the region, e.g. ``30 123456`` for DE: without
    its trunk prefix it could as well be a local number of another area).

Number types (``phonenumbers.number_type``)
    Allowed: fixed line, mobile, fixed-or-mobile, VoIP, toll-free (0800 numbers are
    free to call and businesses do run fax lines on them), shared cost (German 0180
    service numbers cost at most a regular call and carry many business fax lines;
    sipgate's printer also lets 01801-01806 through) and UAN (company-wide numbers
    such as UK 03, charged as geographic calls). Rejected: premium rate
    (``number_premium``), personal numbers such as 0700, whose tariff depends on where
    they forward (``number_personal``), pagers and voicemail access numbers, which
    cannot take a fax (``number_pager``, ``number_voicemail``). Any type not named
    here is rejected as ``number_invalid``.

German special-service prefixes (SIPGATE_API.md section 6)
    For +49 numbers only, checked before validity and type as sipgate does: national
    number starting 137 or 138 (mass-call/televoting services) -> ``number_mass_call``;
    900 (premium), 1212 (innovative services), 1807 (service number billed after a
    free waiting time), 181 (international VPN), 185 and 188 (closed user groups) ->
    ``number_premium``. sipgate's printer applies the list to every country, which
    would refuse e.g. Birmingham (+44 121 2...) and Dundee (+44 1382); foreign premium
    numbers are caught by their type instead.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NoReturn

import phonenumbers
from phonenumbers import CountryCodeSource, PhoneNumberFormat, PhoneNumberType

from faxd.errors import ConfigError, ValidationError

__all__ = ["MIN_DIGITS", "mask", "to_e164"]

#: Fewer digits than this are refused before parsing, as sipgate's fax printer does.
MIN_DIGITS = 7
#: Longer input is refused unread: no real number needs it, and it bounds the work.
MAX_INPUT_CHARS = 256
#: How many stars a fully masked value shows at most.
MAX_MASK_STARS = 16

#: National-number prefixes of +49 that faxd never calls, and the code each gets.
GERMAN_SPECIAL_PREFIXES: dict[str, str] = {
    "137": "number_mass_call",
    "138": "number_mass_call",
    "900": "number_premium",
    "1212": "number_premium",
    "1807": "number_premium",
    "181": "number_premium",
    "185": "number_premium",
    "188": "number_premium",
}

ALLOWED_TYPES: frozenset[int] = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.VOIP,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.UAN,
    }
)

REJECTED_TYPES: dict[int, str] = {
    PhoneNumberType.PREMIUM_RATE: "number_premium",
    PhoneNumberType.PERSONAL_NUMBER: "number_personal",
    PhoneNumberType.PAGER: "number_pager",
    PhoneNumberType.VOICEMAIL: "number_voicemail",
}

_TYPE_MESSAGES: dict[str, str] = {
    "number_premium": "is a premium-rate or special-service number, which faxd does "
    "not call",
    "number_mass_call": "is a mass-call (televoting) number, which faxd does not call",
    "number_personal": "is a personal forwarding number with unpredictable charges",
    "number_pager": "is a pager number, which cannot receive faxes",
    "number_voicemail": "is a voicemail access number, which cannot receive faxes",
}

# Anchored at the end: an extension follows the number and is short (a longer digit
# run after "#" is more likely "*31#030..." call codes: refused as symbols). Letters
# right before "x" or "ext" ("Fax12", "0800-BOX1") make a word, left to the letters
# check.
_EXTENSION = re.compile(
    r"""
    (?:
        ;\s*ext\s*=.*                                 # RFC 3966 ;ext=12
      | (?<![a-z])
        (?:extension|extn|ext|xtn|x|durchwahl|dw|apparat|app|nebenstelle|nst)
        \.?\s*[:=.]?\s*[0-9]{1,6}                     # ext. 12, x12, Durchwahl 12
      | \#\s*[0-9]{1,6}                               # #12 (DTMF after the call)
      | [,;]+\s*[0-9]{1,6}                            # dialler pause, then digits
    )\s*$
    """,
    re.IGNORECASE | re.VERBOSE,
)
_DIGITS = frozenset("0123456789")  # str.isdigit() would also pass "²"
_SEPARATORS = frozenset(" -./()")
_MINUS_SIGNS = frozenset("\u2212\u2796\ufe63")  # minus, heavy minus, small hyphen-minus
_E164_SHAPE = re.compile(r"\+[0-9]{7,15}")


def to_e164(raw: str, region: str | None) -> str:
    """Return ``raw`` as E.164 (``+4930123456``) or raise :class:`ValidationError`.

    ``region`` is the default region for national-format input (``"DE"``, any case) or
    None to accept international numbers only. An unknown region raises
    :class:`ConfigError`: that is the operator's mistake, not the caller's.
    """
    default_region = _check_region(region)
    if raw is None:
        _fail("number_empty", "The recipient number is empty; give the fax number.")
    if not isinstance(raw, str):
        _fail("number_invalid", "The recipient number must be given as text.")
    if len(raw) > MAX_INPUT_CHARS:
        _fail("number_invalid", "The recipient number is far too long to be a number.")
    text = _clean(raw)
    if _EXTENSION.search(text):
        _fail(
            "number_has_extension",
            "The recipient number has an extension, which a fax machine cannot dial; "
            "give the recipient's direct fax number.",
        )
    is_uri = text[:4].lower() == "tel:" and not text[4:5].isspace()
    if is_uri:
        # No space after the colon: "Tel: +49 ..." is a label (maybe of the phone, not
        # the fax line), left to the letters check; "tel:+49..." is a URI.
        text = text[4:]
        if ";" in text:
            _fail(
                "number_invalid",
                "tel: URIs with parameters are not accepted; give the plain number.",
            )
    if any(ch.isalpha() for ch in text):
        _fail(
            "number_has_letters",
            "The recipient number contains letters; give digits only, without labels "
            "such as 'Fax:' or vanity letters.",
        )
    if any(ch not in _DIGITS and ch not in _SEPARATORS and ch != "+" for ch in text):
        _fail(
            "number_invalid",
            "The recipient number contains a symbol other than digits, spaces, "
            "- . / ( ) and a leading +; remove it.",
        )
    if "+" in text[1:]:
        _fail(
            "number_invalid",
            "The recipient number has a + that is not at its start; give one number.",
        )
    digits = "".join(ch for ch in text if ch in _DIGITS)
    if not digits:
        _fail(
            "number_empty",
            "The recipient number is empty or has no digits; give the fax number.",
        )
    if len(digits) < MIN_DIGITS:
        _fail(
            "number_too_short",
            f"The recipient number has fewer than {MIN_DIGITS} digits; give the full "
            "fax number with its area code.",
        )
    international = text.startswith("+")
    if is_uri and not international:
        _fail(
            "number_invalid",
            "A tel: URI must hold an international number (tel:+49...); give it so.",
        )
    if default_region is None and not international and digits.startswith("00"):
        # No region, so no national numbers: 00 can only be the ITU's international
        # prefix, which nearly every country dials abroad.
        digits, international = digits[2:], True
    if default_region is None and not international:
        _fail(
            "number_region_required",
            "The recipient number is in national format and no default region is "
            "set; give it in international format starting with +.",
        )
    return _parse(("+" if international else "") + digits, default_region)


def mask(number: str) -> str:
    """Return ``number`` fit for logs: ``+4930123456`` -> ``+49******56``.

    Only an E.164 number of 7 to 15 digits keeps its first two and last two digits;
    anything else (shorter, formatted, garbage) is fully masked with one star per
    character, at most 16. Never raises.
    """
    if not isinstance(number, str):
        return "***"
    value = number.strip()
    if _E164_SHAPE.fullmatch(value):
        digits = value[1:]
        return f"+{digits[:2]}{'*' * (len(digits) - 4)}{digits[-2:]}"
    return "*" * min(len(value), MAX_MASK_STARS)


def _check_region(region: str | None) -> str | None:
    if region is None:
        return None
    code = region.strip().upper() if isinstance(region, str) else ""
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"Unknown default region {region!r} for recipient numbers; use a "
            "two-letter region code such as DE (FAXD_DEFAULT_REGION) or none."
        )
    return code


def _clean(raw: str) -> str:
    """Fold what copy-paste and keyboards produce into ASCII digits and separators.

    Characters it does not know (superscript digits, symbols) are kept as they are, so
    the strictness checks after it refuse them instead of guessing.
    """
    out: list[str] = []
    for ch in raw:
        category = unicodedata.category(ch)
        if category == "Cf":  # zero-width space, LRM/RLM, isolates, BOM, soft hyphen
            continue
        if category == "Nd":  # any script's decimal digit; "No" (², ①) is not one
            out.append(str(unicodedata.decimal(ch)))
        elif ch.isspace():  # includes NBSP, narrow NBSP, ideographic space
            out.append(" ")
        elif category == "Pd" or ch in _MINUS_SIGNS:
            out.append("-")
        elif category == "No":
            out.append(ch)
        else:  # full-width forms (U+FF01-U+FF5E) -> ASCII: plus, parentheses, letters
            out.append(unicodedata.normalize("NFKC", ch))
    return "".join(out).strip()


def _parse(number: str, region: str | None) -> str:
    try:
        parsed = phonenumbers.parse(number, region, keep_raw_input=True)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type in (
            phonenumbers.NumberParseException.TOO_SHORT_NSN,
            phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            _fail("number_too_short", _TOO_SHORT)
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            _fail(
                "number_invalid",
                "The recipient number starts with an unknown country code; check the "
                "digits after + or 00.",
            )
        _fail("number_invalid", _INVALID)
    if region is not None and parsed.country_code_source in (
        CountryCodeSource.FROM_DEFAULT_COUNTRY,
        CountryCodeSource.FROM_NUMBER_WITHOUT_PLUS_SIGN,
    ):
        _require_domestic_form(number, parsed, region)
    national = phonenumbers.national_significant_number(parsed)
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if parsed.country_code == 49:
        for prefix, code in GERMAN_SPECIAL_PREFIXES.items():
            if national.startswith(prefix):
                _fail(code, _type_message(code, e164))
    if not phonenumbers.is_valid_number(parsed):
        reason = phonenumbers.is_possible_number_with_reason(parsed)
        if reason == phonenumbers.ValidationResult.TOO_SHORT:
            _fail("number_too_short", _TOO_SHORT)
        _fail("number_invalid", _INVALID)
    kind = phonenumbers.number_type(parsed)
    if kind in REJECTED_TYPES:
        code = REJECTED_TYPES[kind]
        _fail(code, _type_message(code, e164))
    if kind not in ALLOWED_TYPES:  # a type phonenumbers may add later: refuse it
        _fail("number_invalid", _INVALID)
    return e164


def _require_domestic_form(
    number: str, parsed: phonenumbers.PhoneNumber, region: str
) -> None:
    """Refuse national input that is not dialled that way in ``region``.

    phonenumbers reads DE ``30123456`` as 030 123456 and ``4930123456`` as +49 30
    123456; a person in another German city dialling the first reaches a local number
    there. Accept the national digits only as the region writes them: its national
    format (Italy keeps its 0, NANP leaves the 1 out) or trunk prefix + national number.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = (metadata.national_prefix if metadata is not None else None) or ""
    national = phonenumbers.national_significant_number(parsed)
    written = phonenumbers.normalize_digits_only(
        phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
    )
    if number not in (written, trunk + national):
        _fail(
            "number_invalid",
            f"The recipient number is not a complete national number for region "
            f"{region}; write it with area code and trunk prefix as dialled there, or "
            "in international format starting with +.",
        )


_TOO_SHORT = (
    "The recipient number is too short for its country; give the full fax number "
    "with its area code."
)
_INVALID = (
    "The recipient number is not a valid phone number; check it, or give it in "
    "international format starting with + and the country code."
)


def _type_message(code: str, e164: str) -> str:
    return (
        f"The recipient {mask(e164)} {_TYPE_MESSAGES[code]}; give a regular fax number."
    )


def _fail(code: str, message: str) -> NoReturn:
    raise ValidationError(message, code)
