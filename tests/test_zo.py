"""Zeroth-order engine: regeneration, round trips, fused restore+update, and the estimator's expectation."""

import numpy as np
import pytest
import torch

from paczero.mechanisms.clipping import clip
from paczero.zo import Directions, two_point_estimate

U = 2.0**-24  # fp32 unit roundoff


def make_params(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(16, 8), (8,), (3, 4, 5)]
    return [
        torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype) * 0.05, requires_grad=False)
        for s in shapes
    ]


def test_directions_regenerate_identically_and_differ_by_seed():
    d = Directions(make_params())
    a, b, c = d.materialise(7), d.materialise(7), d.materialise(8)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not any(torch.equal(x, y) for x, y in zip(a, c))
    assert d.numel == 16 * 8 + 8 + 60


@pytest.mark.parametrize("eps", [1e-3, 1e-2])
def test_round_trip_fp32_within_rounding_bound(eps):
    params = make_params()
    before = [p.detach().clone() for p in params]
    d = Directions(params)
    d.apply([(3, eps)])
    d.apply([(3, -2 * eps)])
    d.apply([(3, eps)])
    z = d.materialise(3)
    for p, p0, zz in zip(params, before, z):
        err = (p - p0).abs()
        # three roundings of magnitude ≤ |θ| + 2ε|z| each, plus the rounding of ε·z: ≤ 6u(|θ| + 2ε|z|)
        bound = 6 * U * (p0.abs() + 2 * eps * zz.abs())
        assert torch.all(err <= bound), float((err - bound).max())
        assert float(err.max()) < 4e-8  # a few ulps of the largest weights


def test_round_trip_bf16_drift_is_bounded():
    params = make_params(torch.bfloat16)
    before = [p.detach().float().clone() for p in params]
    d = Directions(params)
    z = d.materialise(11)
    trips = 5
    for _ in range(trips):
        d.apply([(11, 1e-3)])
        d.apply([(11, -2e-3)])
        d.apply([(11, 1e-3)])
    for p, p0, zz in zip(params, before, z):
        mag = p0.abs() + 2e-3 * zz.abs()
        ulp = torch.exp2(torch.floor(torch.log2(mag.clamp(min=1e-30))) - 7)  # bf16 keeps 8 significant bits
        # each of the 3·trips additions rounds by at most half an ulp of its result
        assert torch.all((p.float() - p0).abs() <= 3 * trips * 0.5 * ulp * 2)


def test_fused_restore_and_update_is_one_regeneration_of_the_same_z():
    a, b = make_params(), make_params()
    da, db = Directions(a), Directions(b)
    da.apply([(5, 1e-3)])
    da.apply([(5, -1e-3)])  # at θ
    da.apply([(5, -0.1)])  # update
    db.apply([(5, 1e-3)])
    db.apply([(5, -1e-3 - 0.1)])  # restore and update fused
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-7)
    # duplicate seeds in one call are merged, so this equals a single term
    c = make_params()
    Directions(c).apply([(5, 1e-3), (5, -1e-3 - 0.1)])
    d = make_params()
    Directions(d).apply([(5, -0.1)])
    assert all(torch.equal(x, y) for x, y in zip(c, d))


def test_multiple_directions_in_one_pass_equal_sequential_passes():
    a, b = make_params(torch.float64), make_params(torch.float64)
    Directions(a).apply([(1, 0.5), (2, -0.25)])
    db = Directions(b)
    db.apply([(1, 0.5)])
    db.apply([(2, -0.25)])
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-12)


class Quadratic(torch.nn.Module):
    """Per-example losses l_i(θ) = ½(wᵀx_i − y_i)² + ½|v|²: a quadratic, so central differences are exact."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))
        self.x = torch.randn(20, 6, generator=gen, dtype=torch.float64)
        self.y = torch.randn(20, generator=gen, dtype=torch.float64)

    def forward(self):
        return 0.5 * (self.x @ self.w - self.y) ** 2 + 0.5 * (self.v**2).sum()


def test_estimator_matches_directional_derivative_from_autograd():
    model = Quadratic()
    params = [model.w, model.v]
    losses = model()
    grads = [torch.autograd.grad(losses[i], params, retain_graph=True) for i in range(len(losses))]
    d = Directions([torch.nn.Parameter(p.detach(), requires_grad=False) for p in params])
    with torch.no_grad():
        model.w.data, model.v.data = d.params[0].data, d.params[1].data
    for seed in range(5):
        z = d.materialise(seed)
        d.apply([(seed, 1e-3)])
        plus = model().detach()
        d.apply([(seed, -2e-3)])
        minus = model().detach()
        d.apply([(seed, 1e-3)])
        est = two_point_estimate(plus, minus, 1e-3)
        exact = np.array([sum(float((gi * zi.double()).sum()) for gi, zi in zip(g, z)) for g in grads])
        np.testing.assert_allclose(est.g, exact, rtol=1e-6, atol=1e-8)


def test_estimator_is_unbiased_for_the_gradient_in_expectation():
    model = Quadratic()
    params = [model.w, model.v]
    grad = torch.autograd.grad(model().mean(), params)
    d = Directions([torch.nn.Parameter(p.detach(), requires_grad=False) for p in params])
    with torch.no_grad():
        model.w.data, model.v.data = d.params[0].data, d.params[1].data
    acc = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    n = 3000
    for seed in range(n):
        d.apply([(seed, 1e-3)])
        plus = model().detach()
        d.apply([(seed, -2e-3)])
        minus = model().detach()
        d.apply([(seed, 1e-3)])
        g = two_point_estimate(plus, minus, 1e-3).g.mean()
        for a, z in zip(acc, d.materialise(seed)):
            a += g * z.double()
    est = torch.cat([a.flatten() / n for a in acc])
    true = torch.cat([g.flatten() for g in grad])
    cos = float(est @ true / (est.norm() * true.norm()))
    assert cos > 0.97
    assert abs(float(est.norm() / true.norm()) - 1) < 0.15


def test_nonfinite_losses_are_zeroed_and_counted():
    plus = torch.tensor([1.0, float("nan"), 2.0, float("inf")])
    minus = torch.tensor([0.5, 1.0, 2.0, 1.0])
    est = two_point_estimate(plus, minus, 0.5)
    assert est.n_nonfinite == 2
    np.testing.assert_array_equal(est.g, [0.5, 0.0, 0.0, 0.0])
    assert est.loss == pytest.approx((0.75 + 2.0) / 2)


def test_clip_bounds_every_value_and_reports_fraction():
    g = np.array([-50.0, -1.0, 0.0, 3.0, 100.0])
    out, frac = clip(g, 25.0)
    assert np.all(np.abs(out) <= 25.0)
    np.testing.assert_array_equal(out, [-25.0, -1.0, 0.0, 3.0, 25.0])
    assert frac == pytest.approx(0.4)
    same, none = clip(g, None)
    assert same is g and none == 0.0


def test_no_trainable_parameters_is_an_error():
    with pytest.raises(ValueError, match="no trainable"):
        Directions([])


@pytest.mark.parametrize("track", ["lora", "full"])
@pytest.mark.parametrize("name", ["tiny-opt", "tiny-llama", "tiny-gpt2"])
def test_round_trip_on_real_model_parameters(name, track):
    from paczero.models.config import ModelConfig
    from paczero.models.loaders import load_model

    loaded = load_model(ModelConfig(name=name, track=track))
    params = [p for _, p in loaded.trainable]
    before = [p.detach().clone() for p in params]
    d = Directions(params)
    for seed in (1, 2):
        d.apply([(seed, 1e-3)])
        d.apply([(seed, -2e-3)])
        d.apply([(seed, 1e-3)])
    for p, p0 in zip(params, before):
        assert float((p - p0).abs().max()) <= 12 * U * (float(p0.abs().max()) + 0.05)
    moved = Directions(params)
    moved.apply([(3, 1e-3)])
    assert any(not torch.equal(p, p0) for p, p0 in zip(params, before))  # the test can see a perturbation
