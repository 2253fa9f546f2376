"""The parts of ``graphinspect fuse`` (the command itself is :mod:`plugins.fuse_command`).

- :mod:`.groups`: which source layers fuse into one exported layer, and into what;
- :mod:`.weights`: the fused state_dict, written as torch.save or safetensors;
- :mod:`.against`: the fused groups looked up in a diff against an export;
- :mod:`.table`: the ``table`` reporter of the ``graphinspect/fuse@1`` document.

Not a plugin itself: it implements no hook.
"""
