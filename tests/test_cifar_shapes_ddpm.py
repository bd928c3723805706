"""The device-dependent full recipe and the DDPM that lessons 01 and 02 share (cifar.shapes_ddpm)."""
import copy

import pytest
import torch

from cifar import recipes
from cifar.data import load_dataset, to_model_space
from cifar.recipes import CPU_FULL, LESSONS, RUN_LABELS, check_recipe, get_recipe
from cifar.shapes_ddpm import ALPHAS_CUMPROD, T, ddpm_eps_loss, shapes_recipe, train_shapes_ddpm, vp_marginal_gap
from cifar.trainer import run_path
from minimal.hallucination import ddpm_loss, linear_beta_schedule


def test_the_full_recipe_depends_on_the_device():
    gpu = get_recipe("01-hallucination", "full", device="cuda")
    cpu = get_recipe("01-hallucination", "full", device=torch.device("cpu"))
    assert (gpu["run"], cpu["run"]) == ("gpu-full", "cpu-full") and set(RUN_LABELS) >= {gpu["run"], cpu["run"]}
    assert gpu["model"]["preset"] == "small" and gpu["train"]["steps"] == 3000   # sized by scripts/gpu_budget.py
    assert cpu["model"]["preset"] == "small" and cpu["train"]["steps"] == CPU_FULL["01-hallucination"]["train"]["steps"]
    assert cpu["train"]["compile"] is False and cpu["data"] == gpu["data"] and cpu["diffusion"] == gpu["diffusion"]
    for device in ("cpu", "cuda"):
        assert get_recipe("01-hallucination", "quick", device=device)["run"] == "quick"
        assert get_recipe("01-hallucination", "quick", device=device)["model"]["preset"] == "tiny"
    # a lesson without a CPU recipe runs its GPU recipe anywhere
    assert get_recipe("03-momentum", "full", device="cpu") == get_recipe("03-momentum", "full", device="cuda")
    default = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_recipe("01-hallucination", "full") == get_recipe("01-hallucination", "full", device=default)
    for lesson in LESSONS:
        for mode in ("quick", "full"):
            for device in ("cpu", "cuda"):
                check_recipe(get_recipe(lesson, mode, device=device))


def test_the_variant_overlays_the_cpu_recipe():
    recipe = get_recipe("01-hallucination", "full", variant="grey", device="cpu")
    assert recipe["model"] == {"kind": "unet", "preset": "small", "in_channels": 1}
    assert recipe["data"]["style"] == "grey" and recipe["variant"] == "grey" and recipe["run"] == "cpu-full"
    check_recipe(recipe)
    assert shapes_recipe("full", "cpu") == recipe


def test_get_recipe_refuses_a_bad_device():
    with pytest.raises(TypeError, match="device"):
        get_recipe("01-hallucination", "full", device=3)
    with pytest.raises(ValueError, match="device"):
        get_recipe("01-hallucination", "full", device="abacus")


def test_the_loss_is_minimal_ddpm_loss_on_images():
    images, _ = load_dataset({"name": "shapes", "n": 8, "seed": 0, "style": "grey"})
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    model = lambda x, t: net(x) * t.view(-1, 1, 1, 1)   # reads t, so a wrong time input changes the loss
    ours = ddpm_eps_loss(model, (images,), torch.Generator().manual_seed(3))
    reference = ddpm_loss(model, to_model_space(images), linear_beta_schedule(T, 1e-4, 0.02),
                          generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ours, reference, rtol=1e-6, atol=0)
    assert torch.equal(ALPHAS_CUMPROD, torch.cumprod(1 - linear_beta_schedule(1000, 1e-4, 0.02), 0))
    with pytest.raises(ValueError, match="shape"):
        ddpm_eps_loss(lambda x, t: x[:, :, :4], (images,), torch.Generator().manual_seed(0))


def test_the_ddpm_schedule_is_the_vp_sde_at_t_over_T():
    da, ds = vp_marginal_gap(0.1, 20.0)
    assert 0 < da < 1.5e-3 and 0 < ds < 1.5e-3
    assert min(vp_marginal_gap(0.1, 10.0)) > 0.05   # another VP schedule is far: the check can fail


def test_both_lessons_hit_one_cache_entry(tmp_path, monkeypatch):
    tiny = copy.deepcopy(recipes.RECIPES["01-hallucination"])
    tiny["quick"]["data"]["n"] = 16
    tiny["quick"]["train"] = {**tiny["quick"]["train"], "steps": 2, "batch_size": 4}
    monkeypatch.setitem(recipes.RECIPES, "01-hallucination", tiny)
    first = train_shapes_ddpm("quick", "cpu", cache_dir=tmp_path)            # lesson 01
    second = train_shapes_ddpm("quick", "cpu", cache_dir=tmp_path)           # lesson 02, the same call
    assert not first.from_cache and second.from_cache and first.path == second.path
    assert second.recipe["run"] == "quick" and second.ema.in_channels == 1
    images, _ = load_dataset(shapes_recipe("quick", "cpu")["data"])
    assert run_path(shapes_recipe("quick", "cpu"), ddpm_eps_loss, tmp_path, data=(images,)) == first.path
