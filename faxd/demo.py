"""A small, valid one-page PDF made from text, for the demo and the benchmarks.

Written by hand (a handful of objects and a correct xref table) so faxd needs no
PDF-writing dependency for it; pypdf reads it strictly without a warning.
"""

from __future__ import annotations

__all__ = ["DEMO_RECIPIENT", "text_pdf"]

#: A valid Berlin number the sandbox delivers normally.
DEMO_RECIPIENT = "+49 30 12345678"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_pdf(*lines: str, pages: int = 1) -> bytes:
    """A PDF with ``pages`` A4 pages, each showing ``lines`` in Helvetica."""
    lines = lines or ("faxd",)
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(pages)]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for n in range(pages):
        text = [f"({_escape(line)}) Tj 0 -20 Td" for line in lines]
        text.append(f"(page {n + 1} of {pages}) Tj")
        stream = ("BT /F1 14 Tf 72 770 Td " + " ".join(text) + " ET").encode("latin-1")
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            "/Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_ids[n] + 1} 0 R >>".encode()
        )
        objects.append(
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
