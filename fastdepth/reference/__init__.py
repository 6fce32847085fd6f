"""Plain-PyTorch references, one module per op (``fastdepth.reference.<op>``): the oracle of every test.

They follow the conventions of each op's docstring (and :mod:`fastdepth.conventions`) line by line
and run on any device in any float dtype.
"""
