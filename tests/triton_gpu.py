"""What a GPU does with a Triton kernel that Triton's interpreter by itself never does.

The interpreter runs a grid's programs one after another in order, each operation of a program on
the whole block before the next, in IEEE float32: a kernel that only works in that order, or only
with exact rounding, passes every test on a CPU and fails on a GPU. Three ways it can:

* between programs: two programs writing the same element with different values (the last one in
  grid order wins in the interpreter, any one on a GPU), or one reading what another writes.
  :func:`programs_in_reverse` runs the programs in the reverse order; outputs that differ from
  those of the usual order depend on the order (float atomics aside, whose sums do by design);
* within a program: one thread reading or overwriting, before a barrier, an element of global
  memory (a per-program scratch) that another thread wrote or read since the last barrier
  (``tl.debug_barrier``). :class:`BarrierRaces` records every load and store of each program and
  reports the elements that two lanes reach between two barriers with at least one store;
* rounding: compiled Triton divides (``div.full.f32``: within 2 ulp), takes square roots and logs
  approximately and contracts multiply-adds. :func:`gpu_rounding` moves every float32 quotient
  and log by up to 2 ulp and every square root and product by up to 1 (more than a contraction
  changes), by an amount that depends only on the operands, as the GPU's rounding does.

compute-sanitizer's racecheck, which the GPU campaign runs, sees shared memory only: the Triton
kernels' scratch is global memory, so the race checks here are theirs alone. A lane is an element
of the block an access works on (its shape and flat index): the thread that holds it on a GPU,
where both accesses have the same layout. Atomics are not recorded (they do not race).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from triton.runtime import interpreter

#: frames of the interpreter itself, skipped to find the kernel line that made an access
_NOT_KERNELS = (str(Path(interpreter.__file__).resolve().parents[1]), str(Path(__file__).resolve()))


@contextlib.contextmanager
def _patched(obj, name: str, replacement):
    had_own = name in vars(obj)
    previous = getattr(obj, name)
    setattr(obj, name, replacement)
    try:
        yield previous
    finally:
        if had_own:
            setattr(obj, name, previous)
        else:
            delattr(obj, name)


@contextlib.contextmanager
def programs_in_reverse():
    """Run every grid's programs in the reverse of the interpreter's order (the last program first)."""
    builder = interpreter.interpreter_builder

    def reverse(x, y, z):
        nx, ny, nz = builder.grid_dim
        original(nx - 1 - x, ny - 1 - y, nz - 1 - z)

    with _patched(builder, "set_grid_idx", reverse) as original:
        yield


def _site() -> str:
    """The kernel line (file:line function) that made the current access."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_NOT_KERNELS):
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"


@dataclass
class Race:
    """Elements of global memory that two lanes of one program reached between two barriers, at
    least one of them storing: the two kernel lines and the number of elements."""

    program: tuple[int, int, int]
    first: str
    second: str
    elements: int

    def __str__(self) -> str:
        return f"program {self.program}: {self.first} / {self.second} ({self.elements} elements)"


@dataclass
class BarrierRaces:
    """Records the loads and stores of every program of the Triton kernels launched inside the
    ``with`` block; ``races`` lists what two lanes of a program reached between barriers."""

    races: list[Race] = field(default_factory=list)

    def __enter__(self) -> BarrierRaces:
        builder = interpreter.interpreter_builder
        self._accesses: list[tuple[np.ndarray, np.ndarray, bool, str]] = []
        self._shapes: dict[tuple[int, ...], int] = {}
        self._program = (0, 0, 0)
        self._stack = contextlib.ExitStack()

        def load(ptrs, mask, *rest):
            self._record(ptrs, mask, store=False)
            return original_load(ptrs, mask, *rest)

        def store(ptrs, value, mask, *rest):
            self._record(ptrs, mask, store=True)
            return original_store(ptrs, value, mask, *rest)

        def barrier():
            self._flush()
            return original_barrier()

        def program(x, y, z):
            self._flush()
            self._program = (x, y, z)
            return original_program(x, y, z)

        original_load = self._stack.enter_context(_patched(builder, "create_masked_load", load))
        original_store = self._stack.enter_context(_patched(builder, "create_masked_store", store))
        original_barrier = self._stack.enter_context(_patched(builder, "create_barrier", barrier))
        original_program = self._stack.enter_context(_patched(builder, "set_grid_idx", program))
        return self

    def __exit__(self, *exc) -> None:
        self._flush()
        self._stack.close()

    def _record(self, ptrs, mask, store: bool) -> None:
        addresses = np.asarray(ptrs.data)
        on = np.broadcast_to(np.asarray(mask.data, dtype=bool), addresses.shape).ravel()
        shape = self._shapes.setdefault(addresses.shape, len(self._shapes))
        lanes = np.arange(addresses.size, dtype=np.int64)[on] + (shape << 32)
        self._accesses.append((addresses.ravel()[on].astype(np.uint64), lanes, store, _site()))

    def _flush(self) -> None:
        accesses, self._accesses = self._accesses, []
        if not any(store for _, _, store, _ in accesses):
            return
        address = np.concatenate([a for a, _, _, _ in accesses])
        lane = np.concatenate([lanes for _, lanes, _, _ in accesses])
        store = np.concatenate([np.full(a.size, s) for a, _, s, _ in accesses])
        site = np.concatenate([np.full(a.size, i) for i, (a, _, _, _) in enumerate(accesses)])
        stored = np.isin(address, np.unique(address[store]))
        address, lane, store, site = address[stored], lane[stored], store[stored], site[stored]
        if address.size == 0:  # every store masked off
            return
        order = np.lexsort((lane, address))
        address, lane, store, site = address[order], lane[order], store[order], site[order]
        starts = np.flatnonzero(np.r_[True, address[1:] != address[:-1]])
        lo, hi = np.minimum.reduceat(lane, starts), np.maximum.reduceat(lane, starts)
        pairs: dict[tuple[str, str], int] = {}
        for group in np.flatnonzero(lo != hi):
            begin = starts[group]
            end = starts[group + 1] if group + 1 < starts.size else address.size
            writer = begin + int(np.argmax(store[begin:end]))
            other = next(i for i in range(begin, end) if lane[i] != lane[writer])
            second = accesses[site[other]][3] + (" (store)" if store[other] else " (load)")
            key = (accesses[site[writer]][3] + " (store)", second)
            pairs[key] = pairs.get(key, 0) + 1
        self.races += [Race(self._program, a, b, n) for (a, b), n in pairs.items()]


def _nudged(result, operands, ulps: int):
    """A float32 result moved by -ulps .. ulps steps of 1 ulp, the step a hash of the operands' bits."""
    values = result.data
    if values.dtype != np.float32:
        return result
    mix = np.uint64(0)
    for k, operand in enumerate(operands):
        bits = np.asarray(operand.data, dtype=np.float32).view(np.uint32).astype(np.uint64)
        mix = mix * np.uint64(0x100000001B3) + bits * np.uint64(2 * k + 0x9E3779B97F4A7C15)
    steps = (np.broadcast_to(mix, values.shape) >> np.uint64(40)) % np.uint64(2 * ulps + 1)
    steps = steps.astype(np.int64) - ulps
    out = values
    for k in range(ulps):
        out = np.where(steps > k, np.nextafter(out, np.float32(np.inf)), out)
        out = np.where(steps < -k, np.nextafter(out, np.float32(-np.inf)), out)
    return interpreter.TensorHandle(out.astype(np.float32), result.dtype)


#: the interpreter's float operations that a GPU rounds differently, and by how many ulp at most here
GPU_ROUNDING = {"create_fdiv": 2, "create_log": 2, "create_sqrt": 1, "create_fmul": 1}


@contextlib.contextmanager
def gpu_rounding():
    """Round the float32 quotients, logs, square roots and products of the Triton kernels launched
    inside the ``with`` block as a GPU may (:data:`GPU_ROUNDING`)."""
    builder = interpreter.interpreter_builder
    with contextlib.ExitStack() as stack:
        for name, ulps in GPU_ROUNDING.items():
            stack.enter_context(_patched(builder, name, _rounding(getattr(builder, name), ulps)))
        yield


def _rounding(exact, ulps: int):
    def rounded(*operands):
        return _nudged(exact(*operands), operands, ulps)

    return rounded
