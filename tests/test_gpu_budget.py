"""scripts/gpu_budget.py: the counting behind the GPU sizes, and the sizes themselves within their budgets."""
import pytest

from scripts import gpu_budget


def test_flops_grow_with_the_batch_and_ops_do_not():
    one, four = (gpu_budget.unet_pass("tiny", 1, b, calls=1, train=False) for b in (8, 32))
    assert four.flops == pytest.approx(4 * one.flops) and four.ops == one.ops > 50
    step = gpu_budget.unet_pass("tiny", 1, 8, calls=1, train=True)
    assert 2.5 * one.flops < step.flops < 4 * one.flops, "a training step is about three forwards"
    assert step.ops > 3 * one.ops


def test_a_pass_is_bound_by_compute_or_by_dispatch():
    p = gpu_budget.Pass("x", flops=gpu_budget.R_H100_FLOPS, ops=10, calls=3)
    assert p.seconds() == pytest.approx((3.0, 30 * gpu_budget.SECONDS_PER_OP))


@pytest.mark.parametrize("lesson", gpu_budget.LESSONS)
def test_each_full_mode_fits_two_minutes_on_an_h100_and_fifteen_on_a_t4(lesson):
    e = gpu_budget.estimate(lesson)
    assert e["h100_s"] <= 120 and e["t4_s"] <= 15 * 60, e


def test_an_unknown_lesson_is_refused():
    with pytest.raises(ValueError, match="lesson must be one of"):
        gpu_budget.estimate("05-fast-and-exact")
