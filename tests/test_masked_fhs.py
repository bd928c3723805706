"""Paper claims of minimal/masked_fhs.py at small scale, and bad input.

Zheng et al. (ICLR 2025): the masked diffusion ELBO equals a time-agnostic masked-LM loss; the
first-hitting sampler (FHS) samples the same distribution as the discretised sampler; float32
categorical sampling truncates rare tokens, more so as the number of steps grows.
"""
import itertools
import math

import pytest
import torch

import collections

from minimal.masked_fhs import (fhs_sample, first_hitting_times, fp32_unmask_probability, masked_diffusion_loss,
                                mdlm_sample, mdlm_truncated_law, sample_categorical)

DELTA32 = 2.0 ** -24


# ------------------------------------------------------------------------------------------------
# a short Markov chain whose exact denoiser is known by enumeration
# ------------------------------------------------------------------------------------------------
V_CHAIN, L_CHAIN = 3, 4
SEQS = torch.tensor(list(itertools.product(range(V_CHAIN), repeat=L_CHAIN)))  # [V^L, L]
_START = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
_STEP = torch.tensor([[0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.9, 0.05, 0.05]], dtype=torch.float64)
P_SEQ = _START[SEQS[:, 0]] * torch.stack([_STEP[SEQS[:, i], SEQS[:, i + 1]] for i in range(L_CHAIN - 1)]).prod(0)
MASK = V_CHAIN  # the mask id is the first id outside the vocabulary


def chain_denoiser(x):
    """The exact mu^i(x_t) = P(x^i = v | unmasked part of x_t): [B, L] -> [B, L, V]."""
    compatible = ((x[:, None, :] == MASK) | (x[:, None, :] == SEQS[None])).all(-1)  # [B, V^L]
    w = compatible * P_SEQ  # posterior over full sequences
    onehot = torch.nn.functional.one_hot(SEQS, V_CHAIN).to(torch.float64)  # [V^L, L, V]
    probs = torch.einsum("bs,slv->blv", w, onehot)
    return probs / probs.sum(-1, keepdim=True)


def total_variation(tokens):
    index = (tokens * V_CHAIN ** torch.arange(L_CHAIN - 1, -1, -1)).sum(1)  # base-V number of each sequence
    freq = torch.bincount(index, minlength=len(SEQS)).double() / len(tokens)
    return 0.5 * (freq - P_SEQ).abs().sum().item()


def test_fhs_and_many_step_mdlm_sample_the_exact_distribution():
    n = 3000
    traj_fhs, traj_mdlm = [], []
    tok_fhs = fhs_sample(chain_denoiser, (n, L_CHAIN), MASK, generator=torch.Generator().manual_seed(1),
                         trajectory=traj_fhs)
    tok_mdlm = mdlm_sample(chain_denoiser, (n, L_CHAIN), MASK, 100, generator=torch.Generator().manual_seed(2),
                           trajectory=traj_mdlm)
    tok_one = mdlm_sample(chain_denoiser, (n, L_CHAIN), MASK, 1, generator=torch.Generator().manual_seed(3))
    tv_fhs, tv_mdlm, tv_one = total_variation(tok_fhs), total_variation(tok_mdlm), total_variation(tok_one)
    # With 81 sequences and 3000 samples the sampling noise alone gives TV ~ 0.03.
    assert tv_fhs < 0.06 and tv_mdlm < 0.06, (tv_fhs, tv_mdlm)
    # One MDLM step draws all positions independently: the factorisation error is large.
    assert tv_one > 0.4, tv_one
    assert len(traj_fhs) == L_CHAIN and 1 <= len(traj_mdlm) <= 100  # a batch calls whenever any row changed


def test_first_hitting_times_are_the_order_statistics_of_uniforms():
    """(3): the k-th event is the (L - k + 1)-th smallest of L uniforms, mean (L - k + 1)/(L + 1)."""
    n = 20000
    times = first_hitting_times((n, L_CHAIN), generator=torch.Generator().manual_seed(4))
    assert times.shape == (n, L_CHAIN) and times.dtype == torch.float64
    assert (times[:, 1:] < times[:, :-1]).all() and (times > 0).all() and (times < 1).all()
    uniforms = torch.rand(n, L_CHAIN, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    order = uniforms.sort(dim=1, descending=True).values
    for k in range(L_CHAIN):
        mean = (L_CHAIN - k) / (L_CHAIN + 1)
        sd = math.sqrt(mean * (1 - mean) / (L_CHAIN + 2))  # Beta(L - k, k + 1)
        assert abs(times[:, k].mean().item() - mean) < 4.5 * sd / math.sqrt(n), k
        assert abs(order[:, k].mean().item() - mean) < 4.5 * sd / math.sqrt(n), k  # the check itself is sound


def test_mdlm_caching_skips_network_calls_and_records_each_call():
    calls = []

    def counted(x):
        calls.append(1)
        return chain_denoiser(x)

    trajectory = []
    tokens = mdlm_sample(counted, (1, L_CHAIN), MASK, 500, generator=torch.Generator().manual_seed(0),
                         trajectory=trajectory)
    assert len(trajectory) == len(calls) <= L_CHAIN  # 500 steps, but a call only after a change
    assert torch.equal(trajectory[-1], tokens) and isinstance(tokens, torch.Tensor)
    masks = [int((x == MASK).sum()) for x in trajectory]
    assert all(a > b for a, b in zip(masks, masks[1:])), masks  # every record unmasked something


def test_samplers_return_the_tokens_and_record_through_trajectory():
    calls = []

    def counted(x):
        calls.append(1)
        return chain_denoiser(x)

    last = collections.deque(maxlen=2)
    tokens = fhs_sample(counted, (5, L_CHAIN), MASK, generator=torch.Generator().manual_seed(0), trajectory=last)
    assert isinstance(tokens, torch.Tensor) and tokens.shape == (5, L_CHAIN) and tokens.dtype == torch.int64
    assert len(calls) == L_CHAIN and len(last) == 2 and torch.equal(last[-1], tokens)
    assert int((last[0] == MASK).sum()) == 5  # one position per sequence still masked before the last call
    again = fhs_sample(chain_denoiser, (5, L_CHAIN), MASK, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, tokens)  # recording changes nothing
    with pytest.raises(TypeError, match="trajectory"):
        fhs_sample(chain_denoiser, (5, L_CHAIN), MASK, trajectory=3)


@pytest.mark.parametrize("bad", [lambda x: chain_denoiser(x)[:1],  # batch 1 of 2
                                 lambda x: chain_denoiser(x)[:, :1],  # one position: would broadcast over L
                                 lambda x: chain_denoiser(x)[:, :, None]])
def test_a_network_output_of_the_wrong_shape_is_an_error(bad):
    for run in (lambda: mdlm_sample(bad, (2, L_CHAIN), MASK, 10), lambda: fhs_sample(bad, (2, L_CHAIN), MASK),
                lambda: masked_diffusion_loss(bad, torch.zeros(2, L_CHAIN, dtype=torch.long), MASK)):
        with pytest.raises(ValueError, match=r"returned shape .*expected \(2, 4, V\)"):
            run()


# ------------------------------------------------------------------------------------------------
# the loss: ELBO (1/t weighting) and masked-LM (uniform n, 1/n weighting) have the same expectation
# ------------------------------------------------------------------------------------------------
def _logits_fn(x):
    """A fixed, imperfect denoiser: the exact one, flattened, plus a position-dependent bias."""
    bias = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64) * torch.arange(1, L_CHAIN + 1)[:, None]
    return (0.5 * torch.log(chain_denoiser(x) + 1e-3) + bias).float()


def _exact_elbo_per_token(x0):
    """eq. 1 by enumerating every mask set M: sum_n (1/n) mean_{|M|=n} sum_{i in M} CE_i, divided by L."""
    total = 0.0
    for n in range(1, L_CHAIN + 1):
        subsets = list(itertools.combinations(range(L_CHAIN), n))
        for subset in subsets:
            x_t = x0.clone()
            x_t[:, list(subset)] = MASK
            logp = torch.log_softmax(_logits_fn(x_t).double(), -1).gather(-1, x0[..., None])[..., 0]
            total += -logp[:, list(subset)].sum().item() / n / len(subsets)
    return total / L_CHAIN


def test_elbo_and_masked_lm_forms_have_the_same_expectation():
    x0 = torch.tensor([[0, 1, 2, 0]])
    exact = _exact_elbo_per_token(x0)
    batch = x0.expand(20000, L_CHAIN)
    values = {}
    for form in ("elbo", "masked_lm"):
        v = masked_diffusion_loss(_logits_fn, batch, MASK, form=form, reduction="none",
                                  generator=torch.Generator().manual_seed(5)).double()
        values[form] = v
        se = v.std().item() / math.sqrt(len(v))
        assert abs(v.mean().item() - exact) < 4 * se, (form, v.mean().item(), exact, se)
    assert values["masked_lm"].std() < values["elbo"].std()  # the 1/t weight is the noisy one
    mean = masked_diffusion_loss(_logits_fn, batch[:8], MASK, generator=torch.Generator().manual_seed(5))
    assert mean.dim() == 0 and torch.isfinite(mean)


def test_loss_trains_gradients():
    emb = torch.nn.Embedding(V_CHAIN + 1, V_CHAIN)
    loss = masked_diffusion_loss(lambda x: emb(x), torch.tensor([[0, 1, 2, 0]] * 4), MASK, form="masked_lm")
    loss.backward()
    assert emb.weight.grad is not None and emb.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------
# the categorical sampler and the float32 truncation
# ------------------------------------------------------------------------------------------------
def test_sample_categorical_frequencies_and_shape():
    probs = torch.tensor([3.0, 1.0, 0.0, 4.0])  # unnormalised, with a zero
    idx = sample_categorical(probs.expand(40000, 4), generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=4).double() / len(idx)
    target = probs.double() / probs.sum()
    assert (freq - target).abs().max() < 4 * math.sqrt(0.25 / len(idx)), freq
    assert freq[2] == 0
    out = sample_categorical(torch.rand(2, 3, 5), dtype=torch.float32)
    assert out.shape == (2, 3) and out.dtype == torch.int64
    assert sample_categorical(torch.tensor([[2.0]])).tolist() == [0]


def _binomial_z(idx, target):
    """|z| of the count of index 1 against Binomial(n, target)."""
    n, k = idx.numel(), int((idx == 1).sum())
    return abs(k - n * target) / math.sqrt(n * target * (1 - target))


@pytest.mark.parametrize("masses, dtype", [
    ([1e308, 1e308], torch.float64),  # p / E overflowed to inf: 0.40 / 0.60 instead of 1/2
    ([1.7e308, 0.85e308], torch.float64),
    ([1e-9, 3e-9], torch.float16),  # underflowed to 0 in float16: always index 0
    ([1e-50, 3e-50], torch.float32),  # underflowed to 0 in float32
    ([3e38, 1e38], torch.float32),
])
def test_race_follows_the_exact_law_at_any_scale(masses, dtype):
    """The race divides by the row maximum first, so neither end of the dtype's range bends the law."""
    probs = torch.tensor(masses, dtype=torch.float64).expand(40000, 2)
    idx = sample_categorical(probs, dtype=dtype, generator=torch.Generator().manual_seed(0))
    target = 1 / (1 + masses[0] / masses[1])  # no sum: it would overflow
    assert _binomial_z(idx, target) < 4.5, ((idx == 1).double().mean().item(), target)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_race_gives_the_same_draws_for_p_and_a_power_of_two_times_p(dtype):
    probs = torch.rand(2000, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    base = sample_categorical(probs, dtype=dtype, generator=torch.Generator().manual_seed(2))
    for c in (2.0 ** -1000, 2.0 ** -60, 2.0 ** 900):
        scaled = sample_categorical(probs * c, dtype=dtype, generator=torch.Generator().manual_seed(2))
        assert torch.equal(base, scaled), c
    as32 = sample_categorical(probs.float() * 2.0 ** 100, dtype=torch.float32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(as32, sample_categorical(probs.float(), dtype=torch.float32,
                                                generator=torch.Generator().manual_seed(2)))


def test_float16_races_cool_mdlm_as_the_closed_form_predicts():
    """The same mechanism with no monkeypatch: float16 uniforms sit on a 2^-11 grid just below 1."""
    K, N = 64, 200
    mu = torch.full((K + 1,), 0.5 / K, dtype=torch.float64)
    mu[0] = 0.5
    tokens = mdlm_sample(lambda x: mu.expand(x.shape[0], x.shape[1], K + 1), (250, 8), K + 1, N,
                         dtype=torch.float16, generator=torch.Generator().manual_seed(0))
    predicted = 1 - mdlm_truncated_law(mu, N, delta=2.0 ** -11)[0].item()
    assert predicted < 0.25 and abs(mdlm_truncated_law(mu, N)[0].item() - 0.5) < 1e-3
    assert abs((tokens > 0).double().mean().item() - predicted) < 4 * math.sqrt(0.25 / tokens.numel())


def test_float32_uniforms_sit_on_the_2_to_minus_24_grid():
    """The premise of the bug: u <= 1 - 2^-24, so E >= 2^-24 and the Gumbel noise -log E <= ~16.6."""
    u = torch.rand(10 ** 6, generator=torch.Generator().manual_seed(0)).double()
    assert ((u * 2 ** 24) % 1 == 0).all() and u.max() <= 1 - DELTA32
    e_min = 1e-10 - math.log(1 - DELTA32 + 1e-10)
    assert 16.5 < -math.log(e_min) < 16.7


def test_closed_form_matches_exact_float32_race():
    """eq. 5 against the race computed on the float32 grid itself (u = 1 - k 2^-24, float32 log)."""
    k = torch.arange(1, 2 ** 16 + 1, dtype=torch.float64)
    u = (1 - k * DELTA32).float()
    e_grid = (torch.tensor(1e-10) - torch.log(u + torch.tensor(1e-10))).double()  # eq. 4 in float32
    for r in (DELTA32 / 4, DELTA32, 4 * DELTA32, 64 * DELTA32, 1e-4):
        p_grid = (DELTA32 * torch.exp(-e_grid / r)).sum().item()  # sum_k P(E_k < r E_m), E_m ~ Exp(1)
        p32, p_exact = fp32_unmask_probability(r)
        assert abs(p32 / p_grid - 1) < 0.01, (r, p32, p_grid)
        assert p32 < p_exact
    p32, p_exact = fp32_unmask_probability(torch.tensor([DELTA32 / 4, 1.0]))
    assert p32[0] / p_exact[0] < 0.1 and abs(p32[1] / p_exact[1] - 1) < 1e-6


def _coarse_rand(bits):
    """torch.rand whose float32 draws lie on a 2^-bits grid, as float32's lie on a 2^-24 grid."""
    real_rand = torch.rand

    def rand(*size, dtype=None, generator=None, device=None, **kw):
        u = real_rand(*size, dtype=torch.float64, generator=generator, device=device, **kw)
        if dtype == torch.float32:
            return (torch.floor(u * 2 ** bits) / 2 ** bits).float()
        return u.to(dtype) if dtype is not None else u.float()

    return rand


def _predicted_tail(mu, num_steps, delta):
    """One position through MDLM's steps, each token's ratio r_v cut to delta/(exp(delta/r_v) - 1)."""
    surviving, drawn = 1.0, torch.zeros_like(mu)
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    for t, s in zip(grid[:-1], grid[1:]):
        if s == 0:
            return drawn + surviving * mu
        r = mu * (t - s) / s
        kept = delta / torch.expm1(delta / r)
        step = kept / (1 + kept.sum())
        drawn, surviving = drawn + surviving * step, surviving * (1 - step.sum().item())
    return drawn


def test_truncated_grid_cools_mdlm_as_predicted(monkeypatch):
    """The oracle tail test. The float32 effect needs N * K ~ 2^24 draws per token to show, too slow for
    a unit test, so the float32 uniforms are put on a 2^-10 grid: the same mechanism at N * K ~ 2^10.
    (The notebook shows the real float32 effect at full size.)"""
    bits, K, N = 10, 64, 160
    mu = torch.full((K + 1,), 0.5 / K, dtype=torch.float64)
    mu[0] = 0.5  # token 0 has half the mass; K rare tokens share the rest

    def oracle(x):
        return mu.expand(x.shape[0], x.shape[1], K + 1)

    shape = (250, 4)
    monkeypatch.setattr(torch, "rand", _coarse_rand(bits))
    tok32 = mdlm_sample(oracle, shape, K + 1, N, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    tok64 = mdlm_sample(oracle, shape, K + 1, N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    tok_fhs = fhs_sample(oracle, shape, K + 1, generator=torch.Generator().manual_seed(0))
    monkeypatch.undo()
    rare32, rare64, rare_fhs = [(t > 0).double().mean().item() for t in (tok32, tok64, tok_fhs)]
    law = _predicted_tail(mu, N, 2.0 ** -bits)
    assert torch.allclose(mdlm_truncated_law(mu, N, delta=2.0 ** -bits), law / law.sum(), rtol=1e-12, atol=0)
    predicted = 1 - law[0].item() / law.sum().item()
    se = math.sqrt(0.25 / tok32.numel())
    assert predicted < 0.3
    assert abs(rare32 - predicted) < 4 * se, (rare32, predicted)
    assert abs(rare64 - 0.5) < 4 * se and abs(rare_fhs - 0.5) < 4 * se, (rare64, rare_fhs)


def test_cutoff_grows_with_the_number_of_steps():
    """eq. 5 on a uniform grid: a token of probability mu is drawn at rate ~ mu / (N t); the float32
    share of a rare token (mu = 1e-5 at t = 1/2) shrinks as N grows."""
    mu, t = 1e-5, 0.5
    ratios = []
    for n in (100, 1000, 10000, 50000):
        r = mu * (1 / n) / (t - 1 / n)
        p32, p = fp32_unmask_probability(r)
        ratios.append(p32 / p)
    assert all(a > b for a, b in zip(ratios, ratios[1:])) and ratios[0] > 0.8 and ratios[-1] < 1e-3


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("probs, match", [
    (torch.tensor([0.5, -0.1]), "non-negative"),
    (torch.tensor([0.5, float("nan")]), "NaN"),
    (torch.tensor([0.5, float("inf")]), "finite"),
    (torch.tensor([[0.5, 0.5], [0.0, 0.0]]), "all zero"),
    (torch.zeros(3, 0), "K >= 1"),
    (torch.tensor(1.0), "K >= 1"),
])
def test_sample_categorical_rejects_bad_probs(probs, match):
    with pytest.raises(ValueError, match=match):
        sample_categorical(probs)


def test_sample_categorical_rejects_bad_types():
    with pytest.raises(TypeError, match="probs"):
        sample_categorical([0.5, 0.5])
    with pytest.raises(TypeError, match="probs"):
        sample_categorical(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="dtype"):
        sample_categorical(torch.tensor([0.5, 0.5]), dtype=torch.int64)
    with pytest.raises(TypeError, match="generator"):
        sample_categorical(torch.tensor([0.5, 0.5]), generator=0)


def test_samplers_reject_bad_input():
    with pytest.raises(ValueError, match="mask_id"):
        mdlm_sample(chain_denoiser, (2, L_CHAIN), 1, 10)  # inside the vocabulary of 3 tokens
    with pytest.raises(ValueError, match="mask_id"):
        fhs_sample(chain_denoiser, (2, L_CHAIN), 2)
    with pytest.raises(ValueError, match="num_steps"):
        mdlm_sample(chain_denoiser, (2, L_CHAIN), MASK, 0)
    with pytest.raises(ValueError, match="shape"):
        fhs_sample(chain_denoiser, (2, 0), MASK)
    with pytest.raises(ValueError, match="probs_fn"):
        mdlm_sample(lambda x: chain_denoiser(x)[:, :-1], (2, L_CHAIN), MASK, 10)  # wrong shape
    with pytest.raises(ValueError, match="probs_fn"):
        fhs_sample(lambda x: chain_denoiser(x).sum(-1), (2, L_CHAIN), MASK)
    with pytest.raises(ValueError, match="non-negative"):
        fhs_sample(lambda x: chain_denoiser(x) - 1, (2, L_CHAIN), MASK)
    with pytest.raises(ValueError, match="NaN"):
        mdlm_sample(lambda x: chain_denoiser(x) * float("nan"), (2, L_CHAIN), MASK, 10)
    with pytest.raises(TypeError, match="probs_fn"):
        mdlm_sample(None, (2, L_CHAIN), MASK, 10)


def test_loss_rejects_bad_input():
    x0 = torch.tensor([[0, 1, 2, 0]])
    with pytest.raises(ValueError, match="mask_id"):
        masked_diffusion_loss(_logits_fn, x0, 2)  # x0 holds token 2 = mask id
    with pytest.raises(ValueError, match="mask_id"):
        masked_diffusion_loss(lambda x: torch.zeros(1, L_CHAIN, 5), x0, MASK)  # V = 5 > mask id 3
    with pytest.raises(ValueError, match="form"):
        masked_diffusion_loss(_logits_fn, x0, MASK, form="time")
    with pytest.raises(TypeError, match="x0"):
        masked_diffusion_loss(_logits_fn, x0.float(), MASK)
    with pytest.raises(ValueError, match="x0"):
        masked_diffusion_loss(_logits_fn, torch.tensor([0, 1]), MASK)


def test_generator_and_empty_input_are_checked_before_any_work():
    calls = []

    def counting(x):
        calls.append(1)
        return chain_denoiser(x)

    def counting_logits(x):
        calls.append(1)
        return _logits_fn(x)

    x0 = torch.tensor([[0, 1, 2, 0]])
    for run in (lambda: mdlm_sample(counting, (2, L_CHAIN), MASK, 10, generator=0),
                lambda: fhs_sample(counting, (2, L_CHAIN), MASK, generator="seed"),
                lambda: masked_diffusion_loss(counting_logits, x0, MASK, generator=1),
                lambda: sample_categorical(torch.ones(2, 3), generator=torch.Generator)):
        with pytest.raises(TypeError, match="generator"):
            run()
    with pytest.raises(ValueError, match="x0"):  # an empty batch was a NaN loss
        masked_diffusion_loss(counting_logits, torch.zeros(0, L_CHAIN, dtype=torch.long), MASK)
    assert not calls
    assert sample_categorical(torch.ones(0, 3)).shape == (0,)


def test_closed_form_rejects_bad_input():
    with pytest.raises(ValueError, match="r must be positive"):
        fp32_unmask_probability(0.0)
    with pytest.raises(ValueError, match="r must be positive"):
        fp32_unmask_probability(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="delta"):
        fp32_unmask_probability(0.1, delta=0.0)
    with pytest.raises(TypeError, match="r must be"):
        fp32_unmask_probability("0.1")
