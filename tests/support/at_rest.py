"""Searching everything a deployment keeps for voucher codes: database dumps, Redis, files and logs.

Every blob is searched as it is, with every zlib stream in it inflated (PDF FlateDecode
streams, object streams), and with PDF string escapes decoded (literal strings' octal
`\\ddd` and backslash escapes, hex strings `<...>`), in ASCII and UTF-16BE.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_ZLIB_HEADER = re.compile(rb"\x78[\x01\x5e\x9c\xda]")
_OCTAL = re.compile(rb"\\([0-7]{1,3})")
_ESCAPED = re.compile(rb"\\(.)", re.S)
_HEX_STRING = re.compile(rb"<([0-9A-Fa-f\s]{4,})>")
_SIMPLE_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_PG_BYTEA = re.compile(rb"\\\\x([0-9a-fA-F]+)")
_SQLITE_BLOB = re.compile(rb"X'([0-9a-fA-F]+)'")


def inflated(blob: bytes, *, depth: int = 2) -> list[bytes]:
    """Every zlib stream found in the blob, inflated (as far as it goes), and the streams inside those."""
    found: list[bytes] = []
    for match in _ZLIB_HEADER.finditer(blob):
        decompressor = zlib.decompressobj()
        out = []
        start = match.start()
        # Fed in pieces: a stream cut short (a SQLite overflow page's pointer) keeps what came before.
        for offset in range(start, len(blob), 4096):
            try:
                out.append(decompressor.decompress(blob[offset : offset + 4096]))
            except zlib.error:
                break
            if decompressor.eof:
                break
        data = b"".join(out)
        if data:
            found.append(data)
            if depth > 1:
                found.extend(inflated(data, depth=depth - 1))
    return found


def pdf_strings_decoded(blob: bytes) -> bytes:
    """The blob with PDF literal-string escapes and hex strings written out."""
    octal = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), blob)
    literal = _ESCAPED.sub(lambda m: _SIMPLE_ESCAPES.get(m.group(1), m.group(1)), octal)
    hexes = []
    for match in _HEX_STRING.finditer(blob):
        digits = re.sub(rb"\s", b"", match.group(1))
        hexes.append(bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode()))
    return literal + b"\n" + b"\n".join(hexes)


def views(blob: bytes) -> list[bytes]:
    """The blob as stored, its inflated streams, and each of them with PDF strings decoded."""
    plain = [blob, *inflated(blob)]
    return [*plain, *(pdf_strings_decoded(b) for b in plain)]


def needles(codes: Iterable[str]) -> dict[bytes, str]:
    """What a stored code can look like: shown (VS-XXXXX-...) or its 20 symbols, any case, ASCII or UTF-16BE."""
    out: dict[bytes, str] = {}
    for code in codes:
        body = code.replace("-", "")[2:]
        for text in (code, body, code.lower(), body.lower()):
            out[text.encode()] = code
            out[text.encode("utf-16-be")] = code
    return out


def codes_found(codes: Iterable[str], blobs: Iterable[bytes]) -> set[str]:
    """The codes that occur in any view of any blob."""
    wanted = needles(codes)
    found: set[str] = set()
    for blob in blobs:
        for view in views(blob):
            found.update(code for needle, code in wanted.items() if needle in view)
    return found


def sqlite_blobs(path: Path) -> list[bytes]:
    """The database file and its WAL as bytes, and a logical dump with every blob decoded."""
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    raw = [p.read_bytes() for p in files]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        dump = "\n".join(conn.iterdump()).encode()
    return [*raw, dump, *(bytes.fromhex(m.group(1).decode()) for m in _SQLITE_BLOB.finditer(dump))]


def postgres_blobs(database_url: str) -> list[bytes]:
    """`pg_dump --data-only` of the database, and every bytea in it decoded."""
    url = database_url.replace("postgres://", "postgresql://", 1)
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--no-owner", f"--dbname={url}"], capture_output=True, check=True, timeout=120
    ).stdout
    return [dump, *(bytes.fromhex(m.group(1).decode()) for m in _PG_BYTEA.finditer(dump))]


async def redis_blobs(redis: Any) -> list[bytes]:
    """Every key of the Redis database and every value, whatever its type."""
    blobs: list[bytes] = []
    async for key in redis.scan_iter(match="*", count=500):
        blobs.append(bytes(key))
        kind = (await redis.type(key)).decode()
        if kind == "string":
            blobs.append(bytes(await redis.get(key) or b""))
        elif kind == "hash":
            blobs.extend(bytes(x) for pair in (await redis.hgetall(key)).items() for x in pair)
        elif kind == "list":
            blobs.extend(bytes(x) for x in await redis.lrange(key, 0, -1))
        elif kind == "set":
            blobs.extend(bytes(x) for x in await redis.smembers(key))
        elif kind == "zset":
            blobs.extend(bytes(x) for x in await redis.zrange(key, 0, -1))
        elif kind == "stream":
            for _, fields in await redis.xrange(key):
                blobs.extend(bytes(x) for pair in fields.items() for x in pair)
    return blobs


def file_blobs(directory: Path) -> list[bytes]:
    """Every file under a directory (mail written to disk, keys, anything else)."""
    return [p.read_bytes() for p in directory.rglob("*") if p.is_file()]
