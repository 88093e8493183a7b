"""Joining PDFs one at a time into a file: memory does not grow with the document.

Split from services.pdf so the join can be read, tested and measured on its own.
"""

from __future__ import annotations

import copy
import gc
import io
from array import array
from typing import IO

from pypdf import PdfReader
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject, NullObject, PdfObject


class PdfJoiner:
    """Joins PDFs page by page into one file, holding one source file at a time.

    Each source's objects are renumbered and written out at once, so memory does
    not grow with the number of pages (but for 8 bytes an object and a page, for the
    cross-reference table and the page tree). pypdf's PdfWriter keeps every page until the end.
    """

    _CATALOG, _PAGES = 1, 2

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.offsets = array("Q", [0, 0, 0])  # by object number; 1 and 2 are written last
        self.kids = array("Q")
        out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

    @property
    def pages(self) -> int:
        return len(self.kids)

    def add(self, data: bytes) -> int:
        """Append every page of one PDF; return how many."""
        reader = PdfReader(io.BytesIO(data))
        renumbered: dict[int, int] = {}
        queue: list[tuple[IndirectObject, int]] = []

        def ref(old: IndirectObject) -> IndirectObject:
            new = renumbered.get(old.idnum)
            if new is None:
                self.offsets.append(0)
                new = renumbered[old.idnum] = len(self.offsets) - 1
                queue.append((old, new))
            return IndirectObject(new, 0, None)

        def remap(obj: PdfObject) -> PdfObject:
            # Copies, never edits: pypdf shares some direct objects between pages.
            if isinstance(obj, IndirectObject):
                return ref(obj)
            if isinstance(obj, DictionaryObject):
                clone = copy.copy(obj)  # keeps a stream's class and data
                for key, value in dict.items(obj):
                    dict.__setitem__(clone, key, remap(value))
                return clone
            if isinstance(obj, ArrayObject):
                return ArrayObject(remap(value) for value in obj)
            return obj

        before = self.pages
        for page in reader.pages:
            assert page.indirect_reference is not None
            self.kids.append(ref(page.indirect_reference).idnum)
            while queue:
                old, new = queue.pop()
                obj = old.get_object()
                assert obj is not None
                if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/Page":
                    source = copy.copy(obj)  # the source's page tree stays behind: the page joins ours
                    source[NameObject("/Parent")] = NullObject()
                    joined = remap(source)
                    assert isinstance(joined, DictionaryObject)
                    joined[NameObject("/Parent")] = IndirectObject(self._PAGES, 0, None)
                    obj = joined
                else:
                    obj = remap(obj)
                self._write(new, obj)
        del reader
        gc.collect()  # pypdf's objects point back at their reader: without this, sources pile up until a full GC
        return self.pages - before

    def _write(self, number: int, obj: PdfObject | bytes) -> None:
        self.offsets[number] = self.out.tell()
        self.out.write(b"%d 0 obj\n" % number)
        if isinstance(obj, bytes):
            self.out.write(obj)
        else:
            obj.write_to_stream(self.out)
        self.out.write(b"\nendobj\n")

    def finish(self) -> None:
        kids = b" ".join(b"%d 0 R" % kid for kid in self.kids)
        self._write(self._PAGES, b"<< /Type /Pages /Count %d /Kids [%s] >>" % (self.pages, kids))
        self._write(self._CATALOG, b"<< /Type /Catalog /Pages %d 0 R >>" % self._PAGES)
        start = self.out.tell()
        self.out.write(b"xref\n0 %d\n0000000000 65535 f \n" % len(self.offsets))
        for offset in self.offsets[1:]:
            self.out.write(b"%010d 00000 n \n" % offset)
        self.out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\n" % (len(self.offsets), self._CATALOG))
        self.out.write(b"startxref\n%d\n%%%%EOF\n" % start)


# -- the tasks ------------------------------------------------------------------------------------------------
