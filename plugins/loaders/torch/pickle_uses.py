"""How a pickle uses each global it names: called, instantiated, or only kept as a value.

The name of a global says little about what unpickling it would do: ``v10Detect`` is a
class though it starts with a lower-case letter, and a model may keep a function (a
norm-layer factory, ``functools.partial(LayerNorm, eps=1e-6)``, a box-op) as a plain
attribute without the pickle ever calling it. :func:`global_uses` reads the opcodes
(``pickletools.genops``, nothing is executed) and follows the pickle machine's stack
and memo symbolically, so that each global is known by what is done with it:

- ``"called"``: the callable of a REDUCE (``f(*args)``), or an INST/OBJ;
- ``"instantiated"``: the class of a NEWOBJ/NEWOBJ_EX (``cls.__new__(cls, *args)``,
  which is how protocol 2 pickles every ``nn.Module``: no ``__init__`` runs);
- ``"value"``: anything else (stored in a dict, a tuple, an object's state).

The simulation uses only the stack effects pickletools documents for each opcode, so an
unknown or malformed stream raises ``ValueError`` and the caller refuses the file.

:func:`scan_pickle` also keeps the persistent ids the pickle asks for (torch.save's
``("storage", torch.FloatStorage, "0", "cpu", numel)``), with strings, integers, globals
and tuples of them as values, so that the storage sizes a file declares can be checked
against the bytes it holds before torch allocates anything.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass

CALLED = "called"
INSTANTIATED = "instantiated"
VALUE = "value"

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


@dataclass(frozen=True, slots=True)
class _Global:
    name: str


@dataclass(frozen=True, slots=True)
class _String:
    value: str


class _Container:
    """A list, dict or set being built, by how many items it holds so far."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size


@dataclass
class PickleFacts:
    """What :func:`scan_pickle` found: how each global is used, the persistent ids
    (tuples of str/int/global name, or None where a value is not a literal), and
    ``copied``: how many items the calls and BUILDs of the pickle would copy out of the
    containers they are given (``set(items)``, ``frozenset(range(n))``, ``OrderedDict
    (pairs)``), an upper bound of what unpickling allocates beyond the pickle itself;
    ``calls``: how many objects calls and instantiations make (REDUCE, NEWOBJ, INST, OBJ)."""

    uses: dict[str, set[str]]
    persistent_ids: list[tuple]
    copied: int = 0
    calls: int = 0


_MARK = object()
_UNKNOWN = object()


_INT_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_TUPLE_SIZES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_EMPTY_CONTAINERS = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"}
_MARKED_CONTAINERS = {"LIST": 1, "DICT": 2, "FROZENSET": 1}
_ADD_ITEMS = {"APPENDS": 1, "SETITEMS": 2, "ADDITEMS": 1}
_RANGES = {"builtins.range", "__builtin__.range", "__builtin__.xrange"}
UNBOUNDED = 2**63


def global_uses(data: bytes) -> dict[str, set[str]]:
    """Global name ("module.qualname") -> how the pickle ``data`` uses it."""
    return scan_pickle(data).uses


def _literal(item: object) -> object:
    if isinstance(item, _String):
        return item.value
    if isinstance(item, _Global):
        return item.name
    if isinstance(item, (int, tuple, _Container)):
        return item
    return None


def _weight(item: object, depth: int = 0) -> int:
    """How many items copying ``item`` (a container, or a tuple of them) copies."""
    if isinstance(item, _Container):
        return item.size
    if isinstance(item, tuple) and depth < 8:
        return sum(_weight(part, depth + 1) for part in item)
    return 0


def _range_length(function: object, arguments: object) -> int:
    if not isinstance(function, _Global) or function.name not in _RANGES:
        return 0
    if not isinstance(arguments, tuple) or not all(isinstance(value, int) for value in arguments):
        return UNBOUNDED  # a range whose bounds are not literals: assume the worst
    try:
        return len(range(*arguments))
    except (TypeError, ValueError, OverflowError):
        return UNBOUNDED


_ITERATING = {
    f"{module}.{name}"
    for module in ("builtins", "__builtin__")
    for name in ("set", "frozenset", "list", "tuple", "dict", "bytearray")
} | {"collections.OrderedDict", "collections.Counter", "collections.deque", "torch.Size"}
"""Callables that copy every item of an iterable argument."""


def _unknown_iterable(function: object, arguments: object) -> int:
    """UNBOUNDED when a copying call is given a value the scan cannot size (the result of
    another call: ``set(tensor)`` iterates an expanded tensor of 2**33 elements)."""
    if not isinstance(function, _Global) or function.name not in _ITERATING or not isinstance(arguments, tuple):
        return 0
    return UNBOUNDED if any(argument is _UNKNOWN for argument in arguments) else 0


def scan_pickle(data) -> PickleFacts:
    """Scan one pickle (bytes, or a binary stream positioned at its start, read up to its
    STOP) without running it; ``ValueError`` for a malformed one."""
    uses: dict[str, set[str]] = {}
    persistent_ids: list[tuple] = []
    copied = calls = 0
    stack: list[object] = []
    memo: dict[int, object] = {}

    def use(item: object, how: str) -> None:
        if isinstance(item, _Global):
            uses.setdefault(item.name, set()).add(how)

    def pop() -> object:
        if not stack:
            raise ValueError("pickle stack underflow")
        item = stack.pop()
        if item is _MARK:
            raise ValueError("unexpected mark on the pickle stack")
        return item

    def pop_to_mark() -> list[object]:
        items: list[object] = []
        while stack:
            item = stack.pop()
            if item is _MARK:
                return items
            items.append(item)
        raise ValueError("pickle mark missing")

    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        # The most frequent opcodes of a torch.save pickle first: the memo, marks, ints.
        if name in _PUT_OPS:
            if not stack:
                raise ValueError("PUT on an empty stack")
            memo[int(arg)] = stack[-1]
        elif name in _GET_OPS:
            if int(arg) not in memo:
                raise ValueError(f"memo key {arg} was never stored")
            stack.append(memo[int(arg)])
        elif name == "MARK":
            stack.append(_MARK)
        elif name in _INT_OPS and isinstance(arg, int) and not isinstance(arg, bool):
            stack.append(arg)
        elif name == "GLOBAL":
            module, _, qualname = str(arg).partition(" ")
            stack.append(_Global(f"{module}.{qualname}"))
            uses.setdefault(f"{module}.{qualname}", set())
        elif name == "STACK_GLOBAL":
            qualname, module = pop(), pop()
            if not isinstance(module, _String) or not isinstance(qualname, _String):
                raise ValueError("STACK_GLOBAL of names not given as strings")
            stack.append(_Global(f"{module.value}.{qualname.value}"))
            uses.setdefault(f"{module.value}.{qualname.value}", set())
        elif name in _STRING_OPS:
            stack.append(_String(arg if isinstance(arg, str) else str(arg)))
        elif name == "REDUCE":
            calls += 1
            arguments, function = pop(), pop()
            use(function, CALLED)
            use(arguments, VALUE)
            length = _range_length(function, arguments)
            copied += _weight(arguments) + _unknown_iterable(function, arguments)
            # A range is charged where it is copied (each time: the memo may hand it out again).
            is_range = isinstance(function, _Global) and function.name in _RANGES
            stack.append(_Container(length) if is_range else _UNKNOWN)
        elif name == "NEWOBJ":
            calls += 1
            arguments, cls = pop(), pop()
            use(cls, INSTANTIATED)
            copied += _weight(arguments)
            stack.append(_UNKNOWN)
        elif name == "BUILD":
            state = pop()
            use(state, VALUE)
            copied += _weight(state)
            if not stack:
                raise ValueError("BUILD on an empty stack")
        elif name in _EMPTY_CONTAINERS:
            stack.append(_Container(0))
        elif name in _MARKED_CONTAINERS:
            items = pop_to_mark()
            for item in items:
                use(item, VALUE)
            stack.append(_Container(len(items) // _MARKED_CONTAINERS[name]))
        elif name in _ADD_ITEMS or name in ("APPEND", "SETITEM"):
            items = pop_to_mark() if name in _ADD_ITEMS else [pop() for _ in range(1 if name == "APPEND" else 2)]
            for item in items:
                use(item, VALUE)
            if not stack or stack[-1] is _MARK:
                raise ValueError(f"{name} without a container")
            if isinstance(stack[-1], _Container):
                stack[-1].size += len(items) // _ADD_ITEMS.get(name, 1 if name == "APPEND" else 2)
        elif name == "NEWOBJ_EX":
            calls += 1
            pop(), pop()
            use(pop(), INSTANTIATED)
            stack.append(_UNKNOWN)
        elif name == "INST":
            calls += 1
            module, _, qualname = str(arg).partition(" ")
            uses.setdefault(f"{module}.{qualname}", set()).add(CALLED)
            for item in pop_to_mark():
                use(item, VALUE)
            stack.append(_UNKNOWN)
        elif name == "OBJ":
            calls += 1
            items = pop_to_mark()
            if not items:
                raise ValueError("OBJ without a class")
            use(items[-1], CALLED)  # the class sits right after the mark
            stack.append(_UNKNOWN)
        elif name == "MEMOIZE":
            if not stack:
                raise ValueError("MEMOIZE on an empty stack")
            memo[len(memo)] = stack[-1]
        elif name == "TUPLE" or name in _TUPLE_SIZES:
            items = pop_to_mark() if name == "TUPLE" else [pop() for _ in range(_TUPLE_SIZES[name])]
            for item in items:
                use(item, VALUE)
            stack.append(tuple(item if item is _UNKNOWN else _literal(item) for item in reversed(items)))
        elif name == "BINPERSID":
            saved = pop()
            persistent_ids.append(saved if isinstance(saved, tuple) else (_literal(saved),))
            stack.append(_UNKNOWN)
        elif name == "PERSID":
            persistent_ids.append((str(arg),))
            stack.append(_UNKNOWN)
        elif name == "STOP":
            break
        else:
            _generic(opcode, stack, pop, pop_to_mark, use)
    return PickleFacts(uses, persistent_ids, copied, calls)


def _generic(opcode, stack, pop, pop_to_mark, use) -> None:
    """Any other opcode, by its documented stack effect: everything it consumes is a
    value; what it produces is unknown (a container, a number, a persistent object)."""
    before = list(opcode.stack_before)
    if pickletools.markobject in before:
        position = before.index(pickletools.markobject)
        for item in pop_to_mark():
            use(item, VALUE)
        for _ in range(position):
            use(pop(), VALUE)
    else:
        for _ in before:
            use(pop(), VALUE)
    stack.extend(_UNKNOWN for _ in opcode.stack_after)
