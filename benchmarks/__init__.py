"""Benchmarks of fastdepth against its peers (installed as ``fastdepth.benchmarks`` for ``fastdepth bench``)."""
