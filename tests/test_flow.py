"""Rectified-flow identities (models.network.flow): the pure functions every sampler and loss is built from."""

import pytest
import torch

from models.network import flow


def sample(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, 4, 3, 8, 8, generator=g)
    noise = torch.randn(2, 4, 3, 8, 8, generator=g)
    sigma = torch.rand(2, 4, generator=g).clamp(0.05, 0.95)
    return x0, noise, sigma


def test_noising_endpoints():
    """σ = 0 is the data and σ = 1 pure noise; a swapped convention would silently train the wrong direction."""
    x0, noise, _ = sample()
    assert torch.equal(flow.add_noise(x0, noise, torch.zeros(2, 4)), x0)
    assert torch.equal(flow.add_noise(x0, noise, torch.ones(2, 4)), noise)


def test_noise_level_is_per_frame():
    """Each frame of a clip carries its own σ (the student's chunks sit at different levels)."""
    x0, noise, _ = sample()
    sigma = torch.tensor([[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    x = flow.add_noise(x0, noise, sigma)
    assert torch.equal(x[0, 0], x0[0, 0]) and torch.equal(x[0, 1], noise[0, 1]) and torch.equal(x[1, 1], x0[1, 1])


def test_x0_velocity_round_trip():
    x0, noise, sigma = sample()
    x_t = flow.add_noise(x0, noise, sigma)
    v = flow.velocity_from_x0(x_t, x0, sigma)
    torch.testing.assert_close(v, noise - x0)  # the rectified-flow velocity is ε − x0
    torch.testing.assert_close(flow.x0_from_velocity(x_t, v, sigma), x0)


def test_euler_step_with_the_true_x0_stays_on_the_straight_path():
    """With a perfect x0 prediction one Euler step lands exactly on x_{σ'} for the same noise, and σ' = 0 on x0."""
    x0, noise, sigma = sample()
    x_t = flow.add_noise(x0, noise, sigma)
    nxt = sigma * 0.5
    torch.testing.assert_close(flow.euler_step(x_t, x0, sigma, nxt), flow.add_noise(x0, noise, nxt))
    torch.testing.assert_close(flow.euler_step(x_t, x0, sigma, torch.zeros_like(sigma)), x0)


def test_shift_and_schedules():
    assert flow.shift_sigma(0.0, 3.0) == 0.0 and flow.shift_sigma(1.0, 3.0) == 1.0
    assert flow.shift_sigma(0.5, 3.0) == pytest.approx(0.75)  # a shift > 1 spends more time at high noise
    s = flow.teacher_sigmas(50, 3.0)
    assert s.shape == (51,) and s[0] == 1.0 and s[-1] == 0.0 and bool((s[1:] < s[:-1]).all())
    torch.testing.assert_close(flow.student_sigmas([1000, 757, 522], 1.0), torch.tensor([1.0, 0.757, 0.522, 0.0]))
    with pytest.raises(ValueError, match="decreasing"):
        flow.student_sigmas([522, 757], 8.0)


def test_guidance_scale_one_is_the_conditional_prediction():
    a, b, _ = sample()
    torch.testing.assert_close(flow.guided_x0(a, b, 1.0), a)
    torch.testing.assert_close(flow.guided_x0(a, b, 0.0), b)


def test_loss_is_zero_at_the_answer_and_weights_low_noise_up():
    x0, noise, sigma = sample()
    assert float(flow.flow_loss(x0, x0, sigma).abs().max()) == 0.0
    err = x0 + 0.1
    low = flow.flow_loss(err, x0, torch.full((2, 4), 0.1))
    high = flow.flow_loss(err, x0, torch.full((2, 4), 0.9))
    assert bool((low > high).all())


def test_training_sigmas_are_seeded_and_in_range():
    a = flow.sample_train_sigma((64,), 3.0, torch.Generator().manual_seed(1))
    b = flow.sample_train_sigma((64,), 3.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and float(a.min()) > 0 and float(a.max()) < 1


def test_loss_bins_add_up():
    loss = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    sigma = torch.tensor([[0.05, 0.95], [0.5, 1.0]])
    sums, counts = flow.loss_by_sigma_bin(loss, sigma, 4)
    assert sums.tolist() == [1.0, 0.0, 3.0, 6.0] and counts.tolist() == [1.0, 0.0, 1.0, 2.0]
