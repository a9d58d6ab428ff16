"""Tests for faxd.validation: every verdict, on in-memory PDFs from tests/pdfs.py."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import threading
from pathlib import Path

import pytest
from pypdf import PdfReader

from faxd.config import Settings
from faxd.errors import CODES, ValidationError
from faxd.validation import Document, validate_file, validate_pdf
from tests import pdfs

MIB = 1024 * 1024


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({})


def refusal(data: bytes, settings: Settings, **kwargs: bool) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate_pdf(data, settings, **kwargs)
    assert info.value.code in CODES
    assert info.value.message.endswith(".")
    return info.value


def test_accepts_a_plain_pdf_and_describes_it(settings: Settings) -> None:
    """A valid 3-page PDF comes back unchanged with its page count, size and hashes."""
    data = pdfs.text_pdf(3, "plain")
    document = validate_pdf(data, settings)
    digest = hashlib.sha256(data).hexdigest()
    assert document == Document(
        pdf=data, pages=3, size=len(data), sha256=digest, source_sha256=digest,
        flattened=False,
    )  # fmt: skip
    assert data not in repr(document).encode()


def test_text_pdf_fixture_is_unique_per_text() -> None:
    """tests/pdfs.py gives different bytes for different texts, equal for equal ones."""
    assert pdfs.text_pdf(1, "a") != pdfs.text_pdf(1, "b")
    assert pdfs.text_pdf(1, "a") == pdfs.text_pdf(1, "a")


def test_empty_file_is_refused(settings: Settings) -> None:
    """Zero bytes is empty_file, before any parsing."""
    assert refusal(b"", settings).code == "empty_file"


def test_file_over_the_size_limit_is_refused(settings: Settings) -> None:
    """A PDF over max_pdf_bytes is pdf_too_large; the message gives both sizes."""
    data = pdfs.text_pdf(2, "large")
    small = dataclasses.replace(settings, max_pdf_bytes=len(data) - 1)
    error = refusal(data, small)
    assert error.code == "pdf_too_large"
    assert str(len(data)) in error.message
    assert str(len(data) - 1) in error.message
    assert validate_pdf(data, dataclasses.replace(small, max_pdf_bytes=len(data)))


def test_big_pdf_is_refused_by_default_limit(settings: Settings) -> None:
    """A 21 MiB PDF exceeds the default 20 MiB limit."""
    assert refusal(pdfs.big_pdf(21 * MIB), settings).code == "pdf_too_large"


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (pdfs.PNG_HEADER, "image/png"),
        (pdfs.HTML, "text/html"),
        (pdfs.POSTSCRIPT, "application/postscript"),
    ],
)
def test_other_formats_are_not_pdf(settings: Settings, data: bytes, mime: str) -> None:
    """PNG, HTML and PostScript are not_pdf, and the message names libmagic's type."""
    error = refusal(data, settings)
    assert error.code == "not_pdf"
    assert mime in error.message


def test_leading_junk_is_corrupt(settings: Settings) -> None:
    """Bytes before %PDF make the file pdf_corrupt, though viewers would open it."""
    error = refusal(pdfs.leading_junk_pdf(), settings)
    assert error.code == "pdf_corrupt"
    assert "junk" in error.message


def test_truncated_pdf_is_corrupt(settings: Settings) -> None:
    """An interrupted upload (libmagic says PDF) is pdf_corrupt with pypdf's reason."""
    error = refusal(pdfs.truncated_pdf(), settings)
    assert error.code == "pdf_corrupt"
    assert "EOF marker not found" in error.message


def test_parser_reason_never_quotes_document_bytes(settings: Settings) -> None:
    """A parser error quoting the file's bytes is scrubbed before the message."""
    data = b"%PDF-1.7\n" + b"SECRETCONTENT " * 20
    error = refusal(data, settings)
    assert error.code == "pdf_corrupt"
    assert "SECRET" not in error.message


def test_user_password_aes256_is_encrypted(settings: Settings) -> None:
    """A PDF needing a user password (AES-256, R6) is pdf_encrypted."""
    error = refusal(pdfs.encrypted_pdf(aes256=True), settings)
    assert error.code == "pdf_encrypted"


def test_user_password_rc4_is_encrypted(settings: Settings) -> None:
    """A PDF needing a user password (RC4-128, R3) is pdf_encrypted."""
    assert refusal(pdfs.encrypted_pdf(aes256=False), settings).code == "pdf_encrypted"


@pytest.mark.parametrize("aes256", [True, False])
def test_owner_only_print_forbidden_is_refused(
    settings: Settings, aes256: bool
) -> None:
    """An owner-password-only PDF that forbids printing is pdf_print_restricted."""
    data = pdfs.owner_only_pdf(print_allowed=False, aes256=aes256)
    assert refusal(data, settings).code == "pdf_print_restricted"


@pytest.mark.parametrize("aes256", [True, False])
def test_owner_only_print_allowed_is_accepted_unchanged(
    settings: Settings, aes256: bool
) -> None:
    """An owner-password-only PDF that allows printing is accepted and faxed as is."""
    data = pdfs.owner_only_pdf(print_allowed=True, aes256=aes256)
    document = validate_pdf(data, settings)
    assert (document.pdf, document.pages, document.flattened) == (data, 1, False)


def test_zero_pages_is_refused(settings: Settings) -> None:
    """A well-formed PDF with an empty page tree is pdf_no_pages."""
    assert refusal(pdfs.zero_pages_pdf(), settings).code == "pdf_no_pages"


def test_too_many_pages_is_refused(settings: Settings) -> None:
    """More real pages than max_pages is too_many_pages; exactly max_pages passes."""
    data = pdfs.text_pdf(4, "many")
    error = refusal(data, dataclasses.replace(settings, max_pages=3))
    assert error.code == "too_many_pages"
    assert "4 pages" in error.message
    assert validate_pdf(data, dataclasses.replace(settings, max_pages=4)).pages == 4


def test_pages_are_counted_not_read_from_count(settings: Settings) -> None:
    """A page tree claiming /Count 1000 with one page is 1 page, within a 3-page cap."""
    document = validate_pdf(pdfs.lying_count_pdf(1000), settings)
    assert document.pages == 1
    capped = dataclasses.replace(settings, max_pages=3)
    assert validate_pdf(pdfs.lying_count_pdf(1000), capped).pages == 1


def test_page_tree_loop_is_refused_quickly(settings: Settings) -> None:
    """A page tree that contains itself is refused as pdf_corrupt, not a hang."""
    error = refusal(pdfs.page_tree_loop_pdf(), settings)
    assert error.code == "pdf_corrupt"
    assert "cyclic" in error.message


def test_decompression_bomb_hits_the_memory_limit(settings: Settings) -> None:
    """A 4 GiB Flate bomb with a 64 MiB budget is pdf_too_complex (memory limit)."""
    tight = dataclasses.replace(settings, validate_memory_bytes=64 * MIB)
    error = refusal(pdfs.bomb_pdf(), tight)
    assert error.code == "pdf_too_complex"
    assert "memory" in error.message


def test_decompression_bomb_hits_pypdf_limit(settings: Settings) -> None:
    """With the default 1 GiB budget the same bomb stops at pypdf's own output limit."""
    error = refusal(pdfs.bomb_pdf(), settings)
    assert error.code == "pdf_too_complex"


def test_wall_clock_limit_kills_the_child(settings: Settings) -> None:
    """A child not done within validate_timeout_s is killed: pdf_too_complex."""
    hasty = dataclasses.replace(settings, validate_timeout_s=1e-9)
    error = refusal(pdfs.text_pdf(50, "slow"), hasty)
    assert error.code == "pdf_too_complex"
    assert "longer than" in error.message
    assert validate_pdf(pdfs.text_pdf(1, "after"), settings).pages == 1  # still works


def test_filled_form_is_refused_by_default(settings: Settings) -> None:
    """An AcroForm with a text field and a checkbox is pdf_has_form by default."""
    error = refusal(pdfs.acroform_pdf(), settings)
    assert error.code == "pdf_has_form"
    assert "2 fields" in error.message


def test_flatten_setting_is_the_default(settings: Settings) -> None:
    """flatten=None follows settings.flatten_forms; flatten=False overrides it."""
    flattening = dataclasses.replace(settings, flatten_forms=True)
    assert validate_pdf(pdfs.acroform_pdf(), flattening).flattened
    data = pdfs.acroform_pdf()
    assert refusal(data, flattening, flatten=False).code == "pdf_has_form"


def test_flattening_burns_values_and_removes_the_form(settings: Settings) -> None:
    """A flattened form shows its value as page text, without widgets or /AcroForm."""
    source = pdfs.acroform_pdf(name="Zoe Flattened")
    document = validate_pdf(source, settings, flatten=True)
    assert document.flattened
    assert document.pages == 1
    assert document.source_sha256 == hashlib.sha256(source).hexdigest()
    assert document.sha256 == hashlib.sha256(document.pdf).hexdigest()
    assert document.sha256 != document.source_sha256
    assert document.size == len(document.pdf)
    reader = PdfReader(io.BytesIO(document.pdf))
    assert "/AcroForm" not in reader.trailer["/Root"]
    assert "/Annots" not in reader.pages[0] or not reader.pages[0]["/Annots"]
    assert "Zoe Flattened" in reader.pages[0].extract_text()


def test_empty_fields_acroform_is_not_a_form(settings: Settings) -> None:
    """An /AcroForm with empty /Fields (an overlay leftover) is accepted unflattened."""
    data = pdfs.empty_fields_acroform_pdf()
    document = validate_pdf(data, settings)
    assert (document.pdf, document.flattened) == (data, False)


@pytest.mark.parametrize("flatten", [False, True])
def test_dynamic_xfa_is_always_refused(settings: Settings, flatten: bool) -> None:
    """Dynamic XFA (NeedsRendering, empty /Fields) is pdf_has_xfa, even flattening."""
    error = refusal(pdfs.xfa_dynamic_pdf(), settings, flatten=flatten)
    assert error.code == "pdf_has_xfa"


@pytest.mark.parametrize("flatten", [False, True])
def test_signed_pdf_is_refused(settings: Settings, flatten: bool) -> None:
    """A digitally signed PDF is pdf_signed, and flattening does not override that."""
    assert refusal(pdfs.signed_pdf(), settings, flatten=flatten).code == "pdf_signed"


def test_messages_name_no_internals(settings: Settings) -> None:
    """Every refusal message is one sentence: no tracebacks, no newlines."""
    samples = [b"", pdfs.HTML, pdfs.truncated_pdf(), pdfs.encrypted_pdf()]
    for data in samples:
        message = refusal(data, settings).message
        assert "\n" not in message
        assert "Traceback" not in message


def test_validate_file_reads_without_changing_the_file(
    tmp_path: Path, settings: Settings
) -> None:
    """validate_file leaves accepted and refused files in place, byte for byte."""
    good = tmp_path / "good.pdf"
    bad = tmp_path / "bad.pdf"
    good.write_bytes(pdfs.text_pdf(2, "on disk"))
    bad.write_bytes(pdfs.truncated_pdf())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (good, bad)}
    assert validate_file(good, settings).pages == 2
    assert validate_file(good, settings, flatten=True).pages == 2
    with pytest.raises(ValidationError):
        validate_file(bad, settings)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (good, bad)} == before
    assert sorted(tmp_path.iterdir()) == [bad, good]


def test_validate_file_refuses_oversize_without_reading(
    tmp_path: Path, settings: Settings
) -> None:
    """validate_file checks the size from stat before reading the file."""
    path = tmp_path / "big.pdf"
    path.write_bytes(pdfs.text_pdf(1, "x"))
    small = dataclasses.replace(settings, max_pdf_bytes=10)
    with pytest.raises(ValidationError) as info:
        validate_file(path, small)
    assert info.value.code == "pdf_too_large"


def test_input_bytes_are_not_modified(settings: Settings) -> None:
    """validate_pdf, even when flattening, leaves the caller's bytes identical."""
    data = pdfs.acroform_pdf()
    copy = bytes(data)
    validate_pdf(data, settings, flatten=True)
    assert data == copy


def test_parallel_threads_get_their_own_verdicts(settings: Settings) -> None:
    """Validations from several threads at once each get the right answer."""
    inputs = [pdfs.text_pdf(i % 3 + 1, f"thread {i}") for i in range(12)]
    inputs += [pdfs.truncated_pdf()] * 4
    results: dict[int, object] = {}

    def run(index: int) -> None:
        try:
            results[index] = validate_pdf(inputs[index], settings).pages
        except ValidationError as error:
            results[index] = error.code

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {i: i % 3 + 1 for i in range(12)}
    expected.update({i: "pdf_corrupt" for i in range(12, 16)})
    assert results == expected


def test_repaired_xref_is_corrupt(settings: Settings) -> None:
    """A file pypdf only reads by repairing its xref (warnings, no error) is corrupt."""
    error = refusal(pdfs.xref_off_by_one_pdf(), settings)
    assert error.code == "pdf_corrupt"
    assert "repaired" in error.message


def test_parser_warnings_stay_in_the_child(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """pypdf's log records and warnings never reach the parent (warnings are errors)."""
    with caplog.at_level(logging.DEBUG):
        refusal(pdfs.xref_off_by_one_pdf(), settings)
        validate_pdf(pdfs.acroform_pdf(), settings, flatten=True)
    assert caplog.records == []


def test_reason_with_file_bytes_is_cut(settings: Settings) -> None:
    """A parser reason quoting stream bytes (missing endstream) leaks none of them."""
    good = pdfs.text_pdf(1, "ZZZZ")
    data = good.replace(b"/Length ", b"/Length 9", 1)  # a longer stream than written
    error = refusal(data, settings)
    assert error.code == "pdf_corrupt"
    assert "ZZZZ" not in error.message
    assert "0 R" not in error.message


def test_static_xfa_with_fields_is_a_form(settings: Settings) -> None:
    """A hybrid XFA form with AcroForm fields is pdf_has_form; flattening drops XFA."""
    data = pdfs.xfa_static_pdf()
    assert refusal(data, settings).code == "pdf_has_form"
    document = validate_pdf(data, settings, flatten=True)
    assert document.flattened
    root = PdfReader(io.BytesIO(document.pdf)).trailer["/Root"]
    assert "/AcroForm" not in root


def test_cpu_limit_kills_the_child(settings: Settings) -> None:
    """A file needing tens of CPU-seconds stops at validate_cpu_s: pdf_too_complex."""
    frugal = dataclasses.replace(settings, validate_cpu_s=1)
    error = refusal(pdfs.cpu_burner_pdf(), frugal)
    assert error.code == "pdf_too_complex"
    assert "CPU" in error.message
