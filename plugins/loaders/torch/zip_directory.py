"""The central directory of a zip file, read as :mod:`zipfile` reads it, in a fraction of the time.

A torch.save state_dict holds one zip entry per tensor: 60,000 on a 10,000-block model.
``zipfile.ZipFile`` builds a :class:`zipfile.ZipInfo` for each (decoded times, extra and
comment fields, about 5 us and 500 bytes an entry, kept for as long as the parse is
reused); the loaders need five numbers and a name. :func:`read_central_directory` reads
the same records the same way and keeps those in an :class:`Entry`; :meth:`Entry.zipinfo`
makes the ZipInfo that zipfile reads an entry's data through, for the few entries read.

What it follows, from zipfile (CPython 3.11, ``_EndRecData`` and ``_RealGetContents``)
and the zip specification (APPNOTE.TXT 4.3.12-4.3.16, 4.5.3):

- the end of central directory record is the last 22 bytes when the archive has no
  comment, else the last "PK\\x05\\x06" in the final 64 KiB + 22 bytes; a zip64 locator
  just before it leads to the zip64 record just before that, whose sizes and offset
  then count;
- data before the archive (a self-extractor's stub) shifts every offset: the directory
  is taken to end where its end record starts, and entry offsets move with it;
- each entry is a 46-byte record ("PK\\x01\\x02") followed by its name (UTF-8 when flag
  bit 11 says so, else cp437), extra field and comment; a name stops at its first NUL,
  as ZipInfo cuts it; the zip64 extra field (id 1) holds the file size, compressed size
  and header offset that their 32-bit fields mark 0xFFFFFFFF, in that order.

Problems raise :class:`zipfile.BadZipFile` (or NotImplementedError for a version zipfile
does not read) with zipfile's messages.
"""

from __future__ import annotations

import os
import struct
import zipfile

_END = struct.Struct("<4s4H2LH")
"""End of central directory: signature, disk numbers (2), entry counts (2), directory
size, directory offset, comment length."""
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
"""Zip64 end of central directory locator: signature, disk, record offset, disk count."""
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
"""Zip64 end of central directory: signature, record size, versions (2), disk numbers
(2), entry counts (2), directory size, directory offset."""
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_CENTRAL = struct.Struct("<4s2xBxHH4x3L3H8xL")
"""A central directory record (46 bytes): signature, the version needed to extract,
flags, compression, CRC, compressed size, size, name/extra/comment lengths, local header
offset; skipped (x) are the version and system that made it, a reserved byte, time and
date, disk number and attributes."""
_CENTRAL_SIGNATURE = b"PK\x01\x02"
_MAX_EXTRACT_VERSION = 63  # zipfile's MAX_EXTRACT_VERSION
_UTF8_NAME = 0x800
_MAX_COMMENT = 1 << 16


class Entry:
    """One entry of a zip's central directory: the attributes of :class:`zipfile.ZipInfo`
    the loaders read, under the same names, and the ZipInfo to read its data with."""

    __slots__ = (
        "filename",
        "orig_filename",
        "header_offset",
        "compress_type",
        "compress_size",
        "file_size",
        "flag_bits",
        "CRC",
    )

    def __init__(
        self,
        name: str,
        header_offset: int,
        compress_type: int,
        compress_size: int,
        file_size: int,
        flag_bits: int,
        crc: int,
    ) -> None:
        self.orig_filename = name
        # As ZipInfo names it: cut at the first NUL, the system's separator as "/".
        null = name.find("\0")
        filename = name[:null] if null >= 0 else name
        if os.sep != "/" and os.sep in filename:
            filename = filename.replace(os.sep, "/")
        self.filename = filename
        self.header_offset = header_offset
        self.compress_type = compress_type
        self.compress_size = compress_size
        self.file_size = file_size
        self.flag_bits = flag_bits
        self.CRC = crc  # noqa: N815 - ZipInfo's name

    def zipinfo(self) -> zipfile.ZipInfo:
        """A ZipInfo zipfile can open this entry's data with (a new one each call)."""
        info = zipfile.ZipInfo(self.orig_filename)
        info.header_offset = self.header_offset
        info.compress_type = self.compress_type
        info.compress_size = self.compress_size
        info.file_size = self.file_size
        info.flag_bits = self.flag_bits
        info.CRC = self.CRC
        return info

    def __repr__(self) -> str:
        return f"<Entry {self.filename!r} file_size={self.file_size}>"


def read_central_directory(stream) -> tuple[int, tuple[Entry, ...]]:
    """Where the central directory of the zip open as ``stream`` starts, and its entries
    (see the module docstring); BadZipFile when there is none or it is damaged."""
    try:
        end = _end_record(stream)
    except OSError:
        end = None
    if end is None:
        raise zipfile.BadZipFile("File is not a zip file")
    directory_size, directory_offset, location, is_zip64 = end
    # Bytes before the archive shift every offset by as much (zipfile's "concat").
    shift = location - directory_size - directory_offset
    if is_zip64:
        shift -= _ZIP64_END.size + _ZIP64_LOCATOR.size
    start = directory_offset + shift
    if start < 0:
        raise zipfile.BadZipFile("Bad offset for central directory")
    stream.seek(start)
    data = stream.read(directory_size)
    return start, _entries(data, directory_size, shift)


def _entries(data: bytes, directory_size: int, shift: int) -> tuple[Entry, ...]:
    entries = []
    record = _CENTRAL.unpack_from
    record_size = _CENTRAL.size
    position = 0
    while position < directory_size:
        if position + record_size > len(data):
            raise zipfile.BadZipFile("Truncated central directory")
        (
            signature,
            extract_version,
            flags,
            compress_type,
            crc,
            compress_size,
            file_size,
            name_length,
            extra_length,
            comment_length,
            header_offset,
        ) = record(data, position)
        if signature != _CENTRAL_SIGNATURE:
            raise zipfile.BadZipFile("Bad magic number for central directory")
        position += record_size
        raw_name = data[position : position + name_length]
        name = raw_name.decode("utf-8") if flags & _UTF8_NAME else raw_name.decode("cp437")
        if extract_version > _MAX_EXTRACT_VERSION:
            raise NotImplementedError(f"zip file version {extract_version / 10:.1f}")
        if extra_length:
            extra = data[position + name_length : position + name_length + extra_length]
            file_size, compress_size, header_offset = _zip64_sizes(extra, file_size, compress_size, header_offset)
        entries.append(Entry(name, header_offset + shift, compress_type, compress_size, file_size, flags, crc))
        position += name_length + extra_length + comment_length
    return tuple(entries)


def _zip64_sizes(extra: bytes, file_size: int, compress_size: int, header_offset: int) -> tuple[int, int, int]:
    """The sizes and offset with those of a zip64 extra field put in (zipfile's
    ``ZipInfo._decodeExtra``); every field of the extra data is checked for its length."""
    while len(extra) >= 4:
        kind, length = struct.unpack_from("<HH", extra)
        if length + 4 > len(extra):
            raise zipfile.BadZipFile(f"Corrupt extra field {kind:04x} (size={length})")
        if kind == 0x0001:
            values = extra[4 : length + 4]
            field = ""
            try:
                if file_size in (0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF):
                    field = "File size"
                    (file_size,) = struct.unpack("<Q", values[:8])
                    values = values[8:]
                if compress_size == 0xFFFF_FFFF:
                    field = "Compress size"
                    (compress_size,) = struct.unpack("<Q", values[:8])
                    values = values[8:]
                if header_offset == 0xFFFF_FFFF:
                    field = "Header offset"
                    (header_offset,) = struct.unpack("<Q", values[:8])
            except struct.error:
                raise zipfile.BadZipFile(f"Corrupt zip64 extra field. {field} not found.") from None
        extra = extra[length + 4 :]
    return file_size, compress_size, header_offset


def _end_record(stream) -> tuple[int, int, int, bool] | None:
    """(directory size, directory offset, where the end record starts, zip64?) or None."""
    stream.seek(0, 2)
    file_size = stream.tell()
    if file_size < _END.size:
        return None
    stream.seek(file_size - _END.size)
    data = stream.read()
    if len(data) == _END.size and data.startswith(_END_SIGNATURE) and data.endswith(b"\0\0"):
        location = file_size - _END.size
        record = data
    else:
        # A comment follows the record: find the last signature within reach of one.
        search_from = max(file_size - _MAX_COMMENT - _END.size, 0)
        stream.seek(search_from)
        data = stream.read()
        found = data.rfind(_END_SIGNATURE)
        if found < 0 or len(data) - found < _END.size:
            return None
        location = search_from + found
        record = data[found : found + _END.size]
    _, _, _, _, _, directory_size, directory_offset, _ = _END.unpack(record)
    zip64 = _zip64_end(stream, location)
    if zip64 is not None:
        return zip64[0], zip64[1], location, True
    return directory_size, directory_offset, location, False


def _zip64_end(stream, location: int) -> tuple[int, int] | None:
    """(directory size, directory offset) of the zip64 record before the end record at
    ``location``, or None when there is none (zipfile's ``_EndRecData64``)."""
    locator_at = location - _ZIP64_LOCATOR.size
    if locator_at < 0:
        return None
    stream.seek(locator_at)
    data = stream.read(_ZIP64_LOCATOR.size)
    if len(data) != _ZIP64_LOCATOR.size:
        return None
    signature, disk, _, disks = _ZIP64_LOCATOR.unpack(data)
    if signature != _ZIP64_LOCATOR_SIGNATURE:
        return None
    if disk != 0 or disks > 1:
        raise zipfile.BadZipFile("zipfiles that span multiple disks are not supported")
    record_at = locator_at - _ZIP64_END.size
    if record_at < 0:
        raise zipfile.BadZipFile("File is not a zip file")  # where zipfile fails to seek
    stream.seek(record_at)
    data = stream.read(_ZIP64_END.size)
    if len(data) != _ZIP64_END.size:
        return None
    signature, _, _, _, _, _, _, _, directory_size, directory_offset = _ZIP64_END.unpack(data)
    if signature != _ZIP64_END_SIGNATURE:
        return None
    return directory_size, directory_offset
