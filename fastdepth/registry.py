"""The op registry: one entry per op; every layer of the op is found from its name.

An op named ``<op>`` is made of these files, each named after it (``grep -r <op>`` finds them all):

* ``fastdepth/<op>.py``: the public functions (``api``), the ``torch.library`` custom ops
  ``fastdepth::<op>`` and ``fastdepth::<op>_backward`` with their fake and autograd registrations,
  and the argument validation;
* ``fastdepth/reference/<op>.py``: the plain-PyTorch reference, the oracle of the tests;
* ``kernels/<op>.py``: the Triton kernels ``<op>_<pass>_kernel`` (``fwd``, ``bwd``; ``proj``: see
  :attr:`Op.passes`; ``<op>_<variant>_<pass>_kernel``: :attr:`Op.variants`), the launchers
  ``<op>_forward`` / ``<op>_backward`` (``<op>_projection``) and ``aot_variants()`` for the compile
  report;
* ``csrc/<op>.cuh`` (per-pixel math shared by CUDA and the CPU twin), ``csrc/<op>.cu`` (CUDA kernels
  and launchers, no torch), ``csrc/<op>_cpu.cpp`` (the CPU twin) and ``csrc/<op>_bindings.cpp``
  (torch glue registering ``fastdepth_ext::<op>_forward`` / ``<op>_backward``, whose arguments are
  the Triton launchers' own: one launcher interface per op);
* ``fastdepth/checks/<op>.py``: named correctness cases (``CASES``, ``SANITIZER_CASES``,
  ``SELFCHECK_CASE``) for the GPU campaign, compute-sanitizer and ``fastdepth info``;
* ``benchmarks/works/<op>.py``: the benchmark work (``WORK``: inputs, peers, implementations,
  floor traffic), measured by the runner and the pytest-benchmark suite;
* ``tests/test_<op>.py`` and ``tests/test_reference_<op>.py``.

The compile report, the self-check, the extension build, the benchmark runner, the GPU campaign
(through :mod:`fastdepth.checks`) and the package's exports iterate :data:`OPS`;
``tests/test_registry.py`` fails if an op lacks any layer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Op:
    name: str
    #: the public functions, exported as ``fastdepth.<function>``
    api: tuple[str, ...]
    #: one line for ``fastdepth info`` and the docs
    summary: str
    #: the passes with kernels of their own: ("fwd", "bwd"), or ("fwd",) where the backward is
    #: composed of other ops' launchers (see the op's module), with "proj" first where the op's
    #: geometry has a kernel of its own (the cost volume's projections)
    passes: tuple[str, ...] = ("fwd", "bwd")
    #: alternative kernels of a pass, as (variant, pass): ``<op>_<variant>_<pass>_kernel``, which the
    #: pass's launchers run when an argument asks for it (the fused objective's tile forward, the cost
    #: volume's sweep backward)
    variants: tuple[tuple[str, str], ...] = ()

    @property
    def module(self) -> str:
        return f"fastdepth.{self.name}"

    @property
    def reference_module(self) -> str:
        return f"fastdepth.reference.{self.name}"

    @property
    def triton_module(self) -> str:
        return f"fastdepth.kernels.{self.name}"

    @property
    def launchers(self) -> tuple[str, ...]:
        """The launcher functions every fused backend offers, with the same arguments."""
        names = {"proj": "projection", "fwd": "forward", "bwd": "backward"}
        return tuple(f"{self.name}_{names[p]}" for p in self.passes)

    @property
    def kernels(self) -> tuple[str, ...]:
        """The Triton and CUDA kernels of the op: one per pass, then its variants'."""
        default = (f"{self.name}_{p}_kernel" for p in self.passes)
        return (*default, *(f"{self.name}_{v}_{p}_kernel" for v, p in self.variants))

    @property
    def cuda_sources(self) -> tuple[str, ...]:
        """``csrc/`` files compiled with nvcc when the CUDA kernels are built."""
        return (f"{self.name}.cu",)

    @property
    def cpu_sources(self) -> tuple[str, ...]:
        """``csrc/`` files always compiled (the CPU twin and the torch glue)."""
        return f"{self.name}_cpu.cpp", f"{self.name}_bindings.cpp"

    @property
    def checks_module(self) -> str:
        return f"fastdepth.checks.{self.name}"

    @property
    def work_module(self) -> str:
        return f"fastdepth.benchmarks.works.{self.name}"


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("warp", ("warp", "warp_frame_depth"), "depth warp (view synthesis), Kornia's warp_frame_depth"),
        Op(
            "photometric",
            ("photometric_loss", "min_reprojection_loss"),
            "SSIM + L1 photometric loss and Monodepth2's per-pixel minimum reprojection",
            variants=(("tile", "bwd"),),
        ),
        Op(
            "reprojection",
            ("reprojection_loss", "identity_loss"),
            "the fused objective: warp, SSIM + L1 and the per-pixel minimum, warped images never stored",
            variants=(("tile", "fwd"),),
        ),
        Op(
            "depth_loss",
            ("scale_invariant_loss", "scale_shift_invariant_loss"),
            "supervised depth losses: scale-invariant log and scale-and-shift-invariant (MiDaS), masked",
        ),
        Op(
            "cost_volume",
            ("cost_volume",),
            "plane-sweep cost volume (ManyDepth, MVSNet): D hypotheses, the warped volume never stored",
            passes=("proj", "fwd", "bwd"),
            variants=(("sweep", "bwd"),),
        ),
    )
}
