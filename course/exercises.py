"""Check a learner's function against the course's reference, with a message that helps.

An exercise notebook defines a function, then calls::

    check(my_fn, reference_fn, cases)

where ``cases`` is a list of inputs (a tuple of positional arguments, a dict of keyword arguments,
or a pair ``(args, kwargs)``). ``check`` runs both functions on every case and either prints one
line saying all agree, or raises an ``AssertionError`` whose message says what differs (shape,
dtype, the largest difference and where) and on which input. A stub that still raises
``NotImplementedError`` makes ``check`` raise ``NotImplementedError`` with a reminder.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch


def _split(case) -> tuple[tuple, dict]:
    if isinstance(case, dict):
        return (), case
    if isinstance(case, tuple) and len(case) == 2 and isinstance(case[0], tuple) and isinstance(case[1], dict):
        return case
    return (case if isinstance(case, tuple) else (case,)), {}


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)} {value.dtype}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    return repr(value) if len(repr(value)) < 40 else type(value).__name__


def describe_case(case) -> str:
    """A short description of one input: shapes and dtypes of tensors, values of small scalars."""
    args, kwargs = _split(case)
    parts = [_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def difference(yours, expected, rtol: float, atol: float, where: str = "output") -> str | None:
    """None when ``yours`` matches ``expected``; otherwise a sentence saying how it differs."""
    if isinstance(expected, (tuple, list)):
        if not isinstance(yours, (tuple, list)) or len(yours) != len(expected):
            return f"{where} should be a tuple of {len(expected)} values, got {_describe(yours)}"
        for i, (y, e) in enumerate(zip(yours, expected)):
            found = difference(y, e, rtol, atol, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(expected, (torch.Tensor, np.ndarray)) or isinstance(yours, (torch.Tensor, np.ndarray)):
        y = torch.as_tensor(yours)
        e = torch.as_tensor(expected)
        if y.shape != e.shape:
            return f"{where} has shape {list(y.shape)}, expected {list(e.shape)}"
        if y.dtype == torch.bool or e.dtype == torch.bool or not (y.is_floating_point() or e.is_floating_point()):
            wrong = (y != e).nonzero()
            return None if len(wrong) == 0 else f"{where} differs at {len(wrong)} positions, first at index {wrong[0].tolist()}: {y[tuple(wrong[0])].item()} vs expected {e[tuple(wrong[0])].item()}"
        y, e = y.double(), e.double()
        if torch.isnan(y).any() and not torch.isnan(e).any():
            return f"{where} contains NaN where the reference has none"
        close = torch.isclose(y, e, rtol=rtol, atol=atol, equal_nan=True)
        if close.all():
            return None
        gap = (y - e).abs().masked_fill(close, 0)
        i = tuple(int(j) for j in np.unravel_index(int(gap.argmax()), gap.shape)) if gap.dim() else ()
        return (f"{where} differs in {int((~close).sum())} of {close.numel()} entries; largest gap at index "
                f"{list(i)}: {y[i].item():.6g} vs expected {e[i].item():.6g}")
    if isinstance(expected, float) or isinstance(yours, float):
        ok = np.isclose(float(yours), float(expected), rtol=rtol, atol=atol)
        return None if ok else f"{where} is {float(yours):.6g}, expected {float(expected):.6g}"
    return None if yours == expected else f"{where} is {yours!r}, expected {expected!r}"


def check(fn: Callable, reference: Callable, cases: Sequence[Any], *, name: str | None = None,
          rtol: float = 1e-5, atol: float = 1e-8) -> None:
    """Compare ``fn`` with ``reference`` on every case; print a success line or raise with a helpful message."""
    if not callable(fn) or not callable(reference):
        raise TypeError("fn and reference must be callables")
    if len(cases) == 0:
        raise ValueError("cases must hold at least one input")
    name = name or getattr(fn, "__name__", "your function")
    for i, case in enumerate(cases):
        args, kwargs = _split(case)
        expected = reference(*args, **kwargs)
        try:
            yours = fn(*args, **kwargs)
        except NotImplementedError as error:
            raise NotImplementedError(f"{name} is not implemented yet: replace the `raise NotImplementedError` "
                                      f"with your code, then run this check again. ({error})") from None
        except Exception as error:
            raise AssertionError(f"{name} raised {type(error).__name__}: {error}\n  on input #{i}: "
                                 f"{describe_case(case)}") from error
        found = difference(yours, expected, rtol, atol)
        if found:
            raise AssertionError(f"{name} disagrees with the reference: {found}\n  on input #{i}: {describe_case(case)}")
    print(f"✓ {name} agrees with the reference on {len(cases)} inputs")
