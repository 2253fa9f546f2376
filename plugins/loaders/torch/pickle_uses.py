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


_MARK = object()
_UNKNOWN = object()


def global_uses(data: bytes) -> dict[str, set[str]]:
    """Global name ("module.qualname") -> how the pickle ``data`` uses it."""
    uses: dict[str, set[str]] = {}
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
        if name == "GLOBAL":
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
            arguments, function = pop(), pop()
            use(function, CALLED)
            use(arguments, VALUE)
            stack.append(_UNKNOWN)
        elif name == "NEWOBJ":
            arguments, cls = pop(), pop()
            use(cls, INSTANTIATED)
            stack.append(_UNKNOWN)
        elif name == "NEWOBJ_EX":
            pop(), pop()
            use(pop(), INSTANTIATED)
            stack.append(_UNKNOWN)
        elif name == "INST":
            module, _, qualname = str(arg).partition(" ")
            uses.setdefault(f"{module}.{qualname}", set()).add(CALLED)
            for item in pop_to_mark():
                use(item, VALUE)
            stack.append(_UNKNOWN)
        elif name == "OBJ":
            items = pop_to_mark()
            if not items:
                raise ValueError("OBJ without a class")
            use(items[-1], CALLED)  # the class sits right after the mark
            stack.append(_UNKNOWN)
        elif name in _PUT_OPS:
            if not stack:
                raise ValueError("PUT on an empty stack")
            memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            if not stack:
                raise ValueError("MEMOIZE on an empty stack")
            memo[len(memo)] = stack[-1]
        elif name in _GET_OPS:
            if int(arg) not in memo:
                raise ValueError(f"memo key {arg} was never stored")
            stack.append(memo[int(arg)])
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "STOP":
            break
        else:
            _generic(opcode, stack, pop, pop_to_mark, use)
    return uses


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
