"""PDFs built in memory for tests and benchmarks: good ones, forms, every kind of bad.

Import it from any test or bench script (``from tests import pdfs``)::

    pdfs.text_pdf(pages=1, text="invoice 42")   # -> bytes of a valid 1-page PDF

Every function returns ``bytes`` and touches no file. Output is deterministic for the
same arguments, except the encrypted fixtures (encryption salts are random). Passing a
``text`` makes the content unique, so two documents with different texts have different
sha256s. Plain and malicious files are written by :func:`assemble` (a classic xref
table, offsets computed here) so they stay byte-exact; forms and encryption go through
pikepdf, which tests already depend on.
"""

from __future__ import annotations

import io
import random
import re
import zlib

import pikepdf

__all__ = [
    "HTML",
    "PNG_HEADER",
    "POSTSCRIPT",
    "acroform_pdf",
    "assemble",
    "big_pdf",
    "bomb_pdf",
    "cpu_burner_pdf",
    "empty_fields_acroform_pdf",
    "encrypted_pdf",
    "leading_junk_pdf",
    "lying_count_pdf",
    "owner_only_pdf",
    "page_tree_loop_pdf",
    "signed_pdf",
    "text_pdf",
    "truncated_pdf",
    "xfa_dynamic_pdf",
    "xfa_static_pdf",
    "xref_off_by_one_pdf",
    "zero_pages_pdf",
]

#: The first bytes of a PNG file (signature and IHDR of a 1x1 image): not a PDF.
PNG_HEADER = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
    b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
)
#: A small HTML page: not a PDF.
HTML = b"<!DOCTYPE html>\n<html><head><title>invoice</title></head><body>Hi</body>\n"
#: A small PostScript program, PDF's close relative: not a PDF.
POSTSCRIPT = b"%!PS-Adobe-3.0\n/Helvetica findfont 24 scalefont setfont\nshowpage\n"

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_MEDIABOX = b"[0 0 612 792]"


def assemble(objects: list[bytes], root: int = 1) -> bytes:
    """Write ``objects`` (bodies of objects 1..n) as a PDF 1.7 with a classic xref."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, root, xref)
    )
    return out.getvalue()


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n%s\nendstream" % (len(data), extra, data)


def _escape(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _page_text(text: str, number: int) -> bytes:
    return b"BT /F1 18 Tf 72 720 Td (%s) Tj 0 -24 Td (page %d) Tj ET" % (
        _escape(text),
        number,
    )


def text_pdf(pages: int = 1, text: str = "faxd test page") -> bytes:
    """A valid PDF of ``pages`` pages, each showing ``text`` and its page number."""
    return _text_pdf(pages, text, pages)


def _text_pdf(pages: int, text: str, count: int) -> bytes:
    # objects: 1 catalog, 2 pages, 3 font, then (page, content) pairs
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count),
        _FONT,
    ]
    for i in range(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Resources"
            b" << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (_MEDIABOX, 5 + 2 * i)
        )
        objects.append(_stream(_page_text(text, i + 1)))
    return assemble(objects)


def zero_pages_pdf() -> bytes:
    """A structurally valid PDF whose page tree is empty (/Count 0, no kids)."""
    return assemble(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    )


def lying_count_pdf(claimed: int = 1000) -> bytes:
    """A 1-page PDF whose page tree claims ``claimed`` pages in /Count."""
    return _text_pdf(1, "lying count", claimed)


def page_tree_loop_pdf() -> bytes:
    """A page tree whose intermediate node lists the root as its own kid (a cycle)."""
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R 4 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 3 0 R /MediaBox %s /Contents 5 0 R >>" % _MEDIABOX,
            _stream(b"0 0 m 100 100 l S"),
        ]
    )


def _zeros_deflated(total: int) -> bytes:
    """A zlib stream inflating to ``total`` zero bytes (rounded up to 1 MiB); ~1/1000.

    Full-flush blocks of zeros are identical, so one is compressed and repeated; the
    Adler-32 of n zeros is (n mod 65521) << 16 | 1, so no gigabytes are ever made.
    """
    chunk = 1 << 20
    count = max(1, -(-total // chunk))
    compressor = zlib.compressobj(9)
    first = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_empty_block = b"\x03\x00"
    adler = ((count * chunk) % 65521) << 16 | 1
    return first + block * (count - 1) + final_empty_block + adler.to_bytes(4, "big")


def bomb_pdf(inflated_bytes: int = 4 << 30) -> bytes:
    """A 1-page PDF whose Flate content stream inflates to ``inflated_bytes``."""
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Contents 4 0 R >>" % _MEDIABOX,
            _stream(_zeros_deflated(inflated_bytes), b"/Filter /FlateDecode "),
        ]
    )


def cpu_burner_pdf(repeats: int = 200, inflated_bytes: int = 64 << 20) -> bytes:
    """A 1-page PDF listing one 64 MiB-inflating stream ``repeats`` times as contents.

    Each stream stays under pypdf's output limit and memory is freed between them, so
    only the CPU limit stops it (about 200 x 64 MiB of inflating, several CPU-seconds).
    """
    contents = b" ".join([b"4 0 R"] * repeats)
    return assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Contents [%s] >>"
            % (_MEDIABOX, contents),
            _stream(_zeros_deflated(inflated_bytes), b"/Filter /FlateDecode "),
        ]
    )


def big_pdf(size: int, pages: int = 1, text: str = "big") -> bytes:
    """A valid PDF of about ``size`` bytes: each page draws one incompressible image."""
    image_bytes = max(1, size // pages)
    side = max(1, int(image_bytes**0.5))
    rng = random.Random(text)
    kids = b" ".join(b"%d 0 R" % (3 + 3 * i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
    ]
    for i in range(pages):
        page, content, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox %s /Resources << /XObject << /Im0"
            b" %d 0 R >> >> /Contents %d 0 R >>" % (_MEDIABOX, image, content)
        )
        objects.append(_stream(b"q 468 0 0 468 72 200 cm /Im0 Do Q"))
        objects.append(
            _stream(
                rng.randbytes(side * side),
                b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace"
                b" /DeviceGray /BitsPerComponent 8 " % (side, side),
            )
        )
        assert page == len(objects) - 2
    return assemble(objects)


def xref_off_by_one_pdf() -> bytes:
    """A 2-page PDF whose xref offsets all point one byte late: pypdf repairs it."""
    whole = text_pdf(2, "xref off by one")
    return re.sub(
        rb"(\d{10}) 00000 n ",
        lambda m: b"%010d 00000 n " % (int(m.group(1)) + 1),
        whole,
    )


def truncated_pdf(keep: float = 0.6) -> bytes:
    """The first ``keep`` fraction of a 3-page PDF, like an interrupted upload."""
    whole = text_pdf(3, "truncated")
    return whole[: int(len(whole) * keep)]


def leading_junk_pdf(junk: bytes = b"leading junk\n") -> bytes:
    """A valid PDF with ``junk`` before its %PDF header."""
    return junk + text_pdf(1, "leading junk")


def _save(pdf: pikepdf.Pdf, **kwargs: object) -> bytes:
    out = io.BytesIO()
    pdf.save(out, deterministic_id="encryption" not in kwargs, **kwargs)
    return out.getvalue()


def encrypted_pdf(
    user: str = "secret", owner: str = "owner", *, aes256: bool = True, pages: int = 1
) -> bytes:
    """A PDF encrypted with a user password: AES-256 (R6) or RC4-128 (R3)."""
    with pikepdf.open(io.BytesIO(text_pdf(pages, "encrypted"))) as pdf:
        encryption = pikepdf.Encryption(
            user=user, owner=owner, R=6 if aes256 else 3, aes=aes256, metadata=aes256
        )
        return _save(pdf, encryption=encryption)


def owner_only_pdf(*, print_allowed: bool, aes256: bool = True) -> bytes:
    """A PDF with an empty user password and an owner password, printing on or off."""
    allow = pikepdf.Permissions(print_lowres=print_allowed, print_highres=print_allowed)
    with pikepdf.open(io.BytesIO(text_pdf(1, "owner only"))) as pdf:
        encryption = pikepdf.Encryption(
            user="",
            owner="owner",
            R=6 if aes256 else 3,
            allow=allow,
            aes=aes256,
            metadata=aes256,
        )
        return _save(pdf, encryption=encryption)


def acroform_pdf(name: str = "Alice Example", checked: bool = True) -> bytes:
    """A 1-page form: a text field filled with ``name`` and a checkbox."""
    with pikepdf.open(io.BytesIO(text_pdf(1, "form"))) as pdf:
        page = pdf.pages[0]
        helv = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Font,
            Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica))  # fmt: skip

        def appearance(content: bytes) -> pikepdf.Stream:
            return pikepdf.Stream(pdf, content, Type=pikepdf.Name.XObject,
                Subtype=pikepdf.Name.Form, BBox=[0, 0, 20, 20])  # fmt: skip

        text_field = pdf.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Widget, FT=pikepdf.Name.Tx,
            T=pikepdf.String("name"), V=pikepdf.String(name), Rect=[72, 600, 372, 624],
            DA=pikepdf.String("/Helv 12 Tf 0 g"), F=4, P=page.obj))  # fmt: skip
        state = pikepdf.Name.Yes if checked else pikepdf.Name.Off
        checkbox = pdf.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Widget, FT=pikepdf.Name.Btn,
            T=pikepdf.String("agree"), V=state, AS=state, Rect=[72, 560, 92, 580], F=4,
            P=page.obj, AP=pikepdf.Dictionary(N=pikepdf.Dictionary(
                Yes=appearance(b"0 g 2 2 16 16 re f"),
                Off=appearance(b"")))))  # fmt: skip
        page.obj.Annots = pikepdf.Array([text_field, checkbox])
        pdf.Root.AcroForm = pikepdf.Dictionary(
            Fields=pikepdf.Array([text_field, checkbox]),
            DR=pikepdf.Dictionary(Font=pikepdf.Dictionary(Helv=helv)),
            DA=pikepdf.String("/Helv 12 Tf 0 g"),
        )
        return _save(pdf)


def empty_fields_acroform_pdf() -> bytes:
    """A 1-page PDF whose catalog has an /AcroForm with an empty /Fields: not a form."""
    with pikepdf.open(io.BytesIO(text_pdf(1, "empty fields"))) as pdf:
        pdf.Root.AcroForm = pikepdf.Dictionary(
            Fields=pikepdf.Array(), NeedAppearances=True
        )
        return _save(pdf)


def xfa_dynamic_pdf() -> bytes:
    """A dynamic XFA form: /NeedsRendering, an /XFA packet, empty AcroForm /Fields."""
    xdp = b'<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template/></xdp:xdp>'
    with pikepdf.open(io.BytesIO(text_pdf(1, "Please wait..."))) as pdf:
        pdf.Root.NeedsRendering = True
        pdf.Root.AcroForm = pikepdf.Dictionary(
            Fields=pikepdf.Array(), XFA=pdf.make_stream(xdp)
        )
        return _save(pdf)


def xfa_static_pdf() -> bytes:
    """A hybrid form: the AcroForm of :func:`acroform_pdf` plus an /XFA packet."""
    xdp = b'<xdp:xdp xmlns:xdp="http://ns.adobe.com/xdp/"><template/></xdp:xdp>'
    with pikepdf.open(io.BytesIO(acroform_pdf("Static Xfa"))) as pdf:
        pdf.Root.AcroForm.XFA = pdf.make_stream(xdp)
        return _save(pdf)


def signed_pdf() -> bytes:
    """A 1-page PDF with a filled signature field and /SigFlags 3 (a fake signature)."""
    with pikepdf.open(io.BytesIO(text_pdf(1, "signed"))) as pdf:
        page = pdf.pages[0]
        signature = pdf.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Sig, Filter=pikepdf.Name("/Adobe.PPKLite"),
            SubFilter=pikepdf.Name("/adbe.pkcs7.detached"), ByteRange=[0, 0, 0, 0],
            Contents=pikepdf.String(bytes(64))))  # fmt: skip
        sig_field = pdf.make_indirect(pikepdf.Dictionary(
            Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Widget, FT=pikepdf.Name.Sig,
            T=pikepdf.String("Signature1"), V=signature, Rect=[0, 0, 0, 0], F=132,
            P=page.obj))  # fmt: skip
        page.obj.Annots = pikepdf.Array([sig_field])
        pdf.Root.AcroForm = pikepdf.Dictionary(
            Fields=pikepdf.Array([sig_field]), SigFlags=3
        )
        return _save(pdf)
