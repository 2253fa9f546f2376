"""Transforms: explain how an exporter changed parameters, by re-computing them.

One module per transform, named as users see it in reports (``fold_batchnorm`` is
:mod:`.fold_batchnorm`); each implements ``graphinspect_transforms`` and returns a
:class:`~inspector.transforms.Transform` (``propose``, ``check``, ``reproduce``, and
``groups`` when ``fuse`` can use it). Helpers shared by several transforms are private
modules (``_layouts``). A new transform is a new module here, listed below.
"""

PLUGINS = (
    "plugins.transforms.identity",
    "plugins.transforms.cast",
    "plugins.transforms.fold_batchnorm",
    "plugins.transforms.fold_scale",
    "plugins.transforms.merge_branches",
    "plugins.transforms.transpose",
    "plugins.transforms.split_qkv",
    "plugins.transforms.recurrent",
    "plugins.transforms.permute",
    "plugins.transforms.view",
    "plugins.transforms.gather",
)
