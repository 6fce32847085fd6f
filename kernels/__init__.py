"""Triton kernels of fastdepth, one module per op (installed as ``fastdepth.kernels``)."""
