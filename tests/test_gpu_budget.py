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


# The sizes scripts/gpu_budget.py charges for, as each notebook writes them: a notebook that grows its
# GPU run without the budget following fails here (and then the limits above say whether it still fits).
BUDGETED_SIZES = {
    "01-hallucination": ['"gpu-full": (2048, 512, 512)', "SAMPLE_STEPS = nb.pick(50, 100)"],
    "02-fpe-gap": ['"gpu-full": dict(n=512, nfe=100, ft_steps=150, ft_batch=64, n_res=256)'],
    "03-momentum": ["nb.pick(quick=700, full=3000), nb.pick(quick=8, full=24)", "full=[6, 8, 10, 15, 20]",
                    "full=[1.5, 3.0, 7.5, 15.0]", "ref_steps = nb.pick(quick=100, full=200)"],
    "04-masked-fhs": ["full=dict(V=256, sigma=8.0, B=4, chain_steps=[100, 1000], steps=[100, 1000, 10000], twin_B=8",
                      "speed_steps=[100, 300, 1000, 3000]"],
}


@pytest.mark.parametrize("lesson", gpu_budget.LESSONS)
def test_the_budget_charges_the_sizes_the_notebook_runs(lesson):
    import nbformat

    nb = nbformat.read(gpu_budget.ROOT / "lessons" / lesson / "cifar.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for snippet in BUDGETED_SIZES[lesson]:
        assert snippet in source, f"{lesson}: the GPU budget assumes `{snippet}`; update scripts/gpu_budget.py"
