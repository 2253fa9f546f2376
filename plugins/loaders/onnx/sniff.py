"""Recognising an ONNX file by its first bytes.

An ONNX file is a serialised ``onnx.ModelProto`` with no magic number, so the only way
to know one is to read the head as protobuf: a sequence of fields, each a tag (field
number << 3 | wire type, as a varint) followed by a varint value or a varint length and
that many bytes. We accept the head when its first fields are ModelProto fields with
the right wire types, nested messages start with a field of their own message type,
strings are UTF-8 (the producer and domain names also printable), no length runs past
the end of the file (unless the head already started like a model, with ``ir_version``
and another field: that is a truncated ONNX file, which the loader reports as such), and
the model either starts with a plausible ``ir_version``
(every protobuf serialiser writes fields in number order, and a valid model always
sets it) or shows at least three valid fields including the graph or the opset imports.

Zip archives ("PK"), pickles (0x80), text and random bytes fail within a byte or two;
the nested-message and text checks keep text that happens to start with a valid tag
byte (``"``, ``(``, ``2``, ``:``, ``B``, ``r``) and other protobuf formats (a TensorFlow
SavedModel also starts with a small varint field 1) from getting far.
"""

from __future__ import annotations

from pathlib import Path

_VARINT = 0
_LEN = 2

MAX_IR_VERSION = 30
"""The highest ``ir_version`` believed plausible (onnx 1.23 writes 14)."""

# ModelProto field number -> wire type.
_MODEL_FIELDS = {
    1: _VARINT,  # ir_version
    2: _LEN,  # producer_name
    3: _LEN,  # producer_version
    4: _LEN,  # domain
    5: _VARINT,  # model_version
    6: _LEN,  # doc_string
    7: _LEN,  # graph
    8: _LEN,  # opset_import
    14: _LEN,  # metadata_props
    20: _LEN,  # training_info
    25: _LEN,  # functions
    26: _LEN,  # configuration
}
_STRING_FIELDS = {2, 3, 4, 6}
_NAME_FIELDS = {2, 3, 4}  # producer_name, producer_version, domain: short printable names
_IR_VERSION = 1
_GRAPH = 7
_OPSET_IMPORT = 8

# The fields a nested message may start with, for the nested messages we look into.
_NESTED_FIRST_FIELDS = {
    # GraphProto: node, name, initializer, doc_string, input, output, value_info,
    # quantization_annotation, sparse_initializer, metadata_props (all length-delimited).
    _GRAPH: {1: _LEN, 2: _LEN, 5: _LEN, 10: _LEN, 11: _LEN, 12: _LEN, 13: _LEN, 14: _LEN, 15: _LEN, 16: _LEN},
    # OperatorSetIdProto: domain, version.
    _OPSET_IMPORT: {1: _LEN, 2: _VARINT},
    # StringStringEntryProto: key, value.
    14: {1: _LEN, 2: _LEN},
}


def looks_like_onnx(path: Path, head: bytes) -> bool:
    """Whether ``head`` (the first bytes of ``path``) starts a plausible ModelProto.

    Never raises; the file name and extension play no part.
    """
    try:
        file_size = path.stat().st_size
    except OSError:
        return False
    try:
        return _plausible_model_head(head, file_size)
    except (IndexError, ValueError):
        return False


def _plausible_model_head(head: bytes, file_size: int) -> bool:
    fields: list[int] = []
    position = 0
    while position < len(head):
        tag, position = _varint(head, position)
        if tag is None:
            break
        number, wire_type = tag >> 3, tag & 7
        if _MODEL_FIELDS.get(number) != wire_type:
            return False
        if wire_type == _VARINT:
            value, position = _varint(head, position)
            if value is None:
                break
            if number == _IR_VERSION and not 1 <= value <= MAX_IR_VERSION:
                return False
        else:
            length, position = _varint(head, position)
            if length is None:
                break
            payload = head[position : position + length]
            complete = len(payload) == length
            if number in _STRING_FIELDS and not _is_text(payload, complete, number in _NAME_FIELDS):
                return False
            if number in _NESTED_FIRST_FIELDS and payload and not _plausible_first_field(payload, number):
                return False
            if position + length > file_size:
                # A field running past the end of the file: a truncated model when it
                # started like one (the loader then says so), else not ONNX at all.
                return bool(fields) and fields[0] == _IR_VERSION and len(fields) >= 2
            position += length
        fields.append(number)
        if len(fields) >= 8:
            break
    whole_file_read = position == len(head) == file_size
    if fields and fields[0] == _IR_VERSION:
        return len(fields) >= 2 or whole_file_read
    return len(fields) >= 3 and (_GRAPH in fields or _OPSET_IMPORT in fields)


def _plausible_first_field(payload: bytes, parent_field: int) -> bool:
    tag, _ = _varint(payload, 0)
    if tag is None:
        return True  # the tag itself runs past the head: nothing to judge
    return _NESTED_FIRST_FIELDS[parent_field].get(tag >> 3) == (tag & 7)


def _is_text(payload: bytes, complete: bool, name: bool) -> bool:
    """UTF-8 text; for a name, also printable (another format's nested message is not)."""
    # A payload cut by the end of the head may end inside a multi-byte character.
    for cut in (0,) if complete else (0, 1, 2, 3):
        try:
            text = payload[: len(payload) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return text.isprintable() if name else True
    return False


def _varint(data: bytes, position: int) -> tuple[int | None, int]:
    """Decode a varint at ``position``; ``(None, position)`` when it runs past ``data``."""
    value = 0
    shift = 0
    while position < len(data):
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    return None, position
