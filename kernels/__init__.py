"""Fast twins of minimal/'s hot loops, under the same contracts.

``kernels.categorical.sample``: exact categorical sampling in one pass (a Triton kernel on CUDA, the
float64 reference of ``minimal/masked_fhs.py`` elsewhere). ``kernels.fhs``: batched first-hitting
and MDLM samplers built on it. ``python -m kernels.bench`` prints the timings.
"""
