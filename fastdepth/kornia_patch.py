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


class patch_kornia:  # noqa: N801 (used like a function)
    """Swap Kornia's ``warp_frame_depth`` for fastdepth's; undone by ``restore()`` or on leaving a ``with``."""

    def __init__(self) -> None:
        self._saved: list[tuple[object, object]] = []
        for module_name in _MODULES:
            module = importlib.import_module(module_name)
            if hasattr(module, "warp_frame_depth"):
                self._saved.append((module, module.warp_frame_depth))
                module.warp_frame_depth = warp_frame_depth

    def restore(self) -> None:
        for module, original in reversed(self._saved):
            module.warp_frame_depth = original
        self._saved.clear()

    def __enter__(self) -> patch_kornia:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()
