"""Reading text inputs as UTF-8 with errors that name the file, the line and the byte offset."""
from __future__ import annotations

import codecs

from datasets.registry import DatasetError

_CHUNK = 1 << 20


def _encoding_hint(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return " The file starts with a UTF-16 byte-order mark: save it as UTF-8."
    if len(head) >= 4 and b"\0\0" in (head[0:4:2], head[1:4:2]):
        return " It looks like UTF-16 (NUL bytes between characters): save it as UTF-8."
    return " Save it as UTF-8."


def utf8_error(path: str, data: bytes | None = None) -> str | None:
    """A message naming ``path``, the 1-based line and the byte offset of the first byte that is not valid
    UTF-8, or None when the whole file decodes. Reads the file in chunks when ``data`` is not given."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line, head = 0, 1, b""
    f = None if data is not None else open(path, "rb")
    try:
        chunks = [data] if data is not None else iter(lambda: f.read(_CHUNK), b"")
        for chunk in chunks:
            head = head or chunk[:4]
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                pos = offset + e.start - len(decoder.getstate()[0])
                line += e.object[:e.start].count(b"\n")
                return (f"{path}, line {line} (byte offset {max(pos, 0)}): not valid UTF-8 "
                        f"({e.reason}, byte 0x{e.object[e.start]:02x}).{_encoding_hint(head)}")
            offset += len(chunk)
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            return (f"{path}, line {line} (byte offset {offset - len(e.object) + e.start}): not valid UTF-8 "
                    f"(truncated multi-byte character at the end of the file).{_encoding_hint(head)}")
    finally:
        if f is not None:
            f.close()
    return None


def read_utf8(path: str) -> str:
    """The file's text (a UTF-8 BOM is dropped); DatasetError naming the line and byte offset otherwise."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(utf8_error(path, data) or f"{path}: not valid UTF-8.") from None
