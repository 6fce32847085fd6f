"""``patch_kornia()``: make ``kornia.geometry.depth.warp_frame_depth`` run fastdepth's warp.

Existing code speeds up with one line::

    fastdepth.patch_kornia()            # for the rest of the process
    with fastdepth.patch_kornia():      # or only inside the block
        ...

Only the name in ``kornia.geometry.depth`` and its re-export ``kornia.geometry.warp_frame_depth``
are swapped; code that did ``from kornia.geometry.depth import warp_frame_depth`` before the
patch keeps the function it imported.
"""

from __future__ import annotations

import importlib

from fastdepth.warp import warp_frame_depth

_MODULES = ("kornia.geometry.depth", "kornia.geometry")
#: Kornia's own functions, saved by the first active patch; restored when the last one ends
_originals: dict[object, object] = {}
_active: list[patch_kornia] = []


class patch_kornia:  # noqa: N801 (used like a function)
    """Swap Kornia's ``warp_frame_depth`` for fastdepth's; undone by ``restore()`` or on leaving a ``with``.

    Patches may nest and may be restored in any order: Kornia gets its own function back when the
    last active patch is restored.
    """

    def __init__(self) -> None:
        if not _active:
            for module_name in _MODULES:
                module = importlib.import_module(module_name)
                if hasattr(module, "warp_frame_depth"):
                    _originals[module] = module.warp_frame_depth
        for module in _originals:
            module.warp_frame_depth = warp_frame_depth
        _active.append(self)

    def restore(self) -> None:
        if self not in _active:
            return
        _active.remove(self)
        if not _active:
            for module, original in _originals.items():
                module.warp_frame_depth = original
            _originals.clear()

    def __enter__(self) -> patch_kornia:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()
