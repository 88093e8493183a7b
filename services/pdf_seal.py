"""The vouchers PDF at rest: every stored chunk and part sealed with AES-GCM, bound to its order and position.

A PDF holds every code of its order in clear (link URIs, page text), so what the
database keeps of it is encrypted under a key derived from VOUCHSAFE_CODE_KEY
(services.codes.CodeCipher). The associated data names the table, the order and the
position: a blob copied to another order or position does not open.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from services.codes import CodeCipher


def chunk_aad(order_id: int, chunk: int) -> bytes:
    return f"vouchsafe/pdf_chunk/order={order_id}/chunk={chunk}".encode()


def part_aad(order_id: int, part: int) -> bytes:
    return f"vouchsafe/pdf_part/order={order_id}/part={part}".encode()


def seal_chunk(cipher: CodeCipher, order_id: int, chunk: int, data: bytes) -> bytes:
    return cipher.seal_document(data, chunk_aad(order_id, chunk))


def open_chunk(cipher: CodeCipher, order_id: int, chunk: int, sealed: bytes) -> bytes:
    return cipher.open_document(sealed, chunk_aad(order_id, chunk))


def seal_part(cipher: CodeCipher, order_id: int, part: int, data: bytes) -> bytes:
    return cipher.seal_document(data, part_aad(order_id, part))


def open_part(cipher: CodeCipher, order_id: int, part: int, sealed: bytes) -> bytes:
    return cipher.open_document(sealed, part_aad(order_id, part))


def is_sealed(cipher: CodeCipher, aad: bytes, blob: bytes) -> bool:
    """Whether the blob opens under this key and position (the migration skips what it sealed already)."""
    try:
        cipher.open_document(blob, aad)
    except InvalidTag:
        return False
    return True
