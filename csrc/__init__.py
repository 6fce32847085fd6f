"""CUDA C++ sources of fastdepth, shipped as package data (``fastdepth.csrc``)."""
