"""The course harness every lesson notebook shares.

- :mod:`course.notebook`: the quick/full switch, the device, seeding, the versions line, tables;
- :mod:`course.exercises`: the automatic checks of the exercise notebooks.

The lessons import it; the laboratories (toy2d, cifar) and kernels never do.
"""
