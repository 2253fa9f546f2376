"""The ``cast`` transform: the source's values in another floating dtype.

    t = dtype(s)     (an fp16/bf16 checkpoint exported as fp32, or fp32 exported as fp16;
                      the tolerance follows the lower precision)

It pairs layers exactly as :mod:`plugins.transforms.identity` does and differs only in
requiring the dtype to change, so it is identity's subclass.
"""

from __future__ import annotations

from inspector.hookspecs import hookimpl
from plugins.transforms.identity import Identity


class Cast(Identity):
    """t = dtype(s): the same values in another floating dtype."""

    name = "cast"
    description = "Parameters cast to another dtype (fp16/bf16 checkpoint as fp32, or fp32 as fp16)."
    order = 15
    phrase = "cast to another dtype"
    explains = "some tensors changed dtype"
    changes_dtype = True


@hookimpl
def graphinspect_transforms():
    yield Cast()
