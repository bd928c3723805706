"""The course harness: what every lesson notebook shares, kept apart from the laboratories.

- :mod:`course.notebook`: the quick/full switch (``DFM_MODE``, read in one place), the device,
  seeding, the versions line, and :func:`course.notebook.show_table` for tables;
- :mod:`course.exercises`: :func:`course.exercises.check`, the automatic checks of the exercise
  notebooks.

A notebook starts with::

    from course.notebook import setup
    nb = setup("toy")        # or setup("cifar"): prints the mode, device and versions

Arrows: the lessons import this package; the laboratories (toy2d, cifar) and kernels never do,
and it never imports the lessons (tests/test_house_rules.py checks both).
"""
