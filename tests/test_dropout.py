"""The fast CPU dropout: nn.Dropout's distribution and scaling, and its gradient."""

import pytest
import torch

from vqa.models.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_rate_and_scaling(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of 4: the last 64-bit word is partly used
    keep = keep_mask(torch.Size([n]), p)
    assert keep.shape == (n,) and keep.dtype == torch.bool
    assert abs(keep.float().mean().item() - (1 - p)) < 5 * ((p * (1 - p) / n) ** 0.5)
    out = Dropout(p).train()(torch.ones(n))
    assert out.unique().tolist() == pytest.approx([0.0, 1 / (1 - p)])
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)


def test_masks_are_random_and_seeded() -> None:
    torch.manual_seed(1)
    a, b = keep_mask(torch.Size([4096]), 0.5), keep_mask(torch.Size([4096]), 0.5)
    torch.manual_seed(1)
    assert torch.equal(keep_mask(torch.Size([4096]), 0.5), a) and not torch.equal(a, b)
    # neighbouring elements are independent (each takes its own 16 bits of a word)
    pairs = (a[0::2].long() * 2 + a[1::2].long()).bincount(minlength=4).float() / 2048
    assert (pairs - 0.25).abs().max() < 0.05


def test_identity_in_eval_and_gradient_through_the_mask() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    drop = Dropout(0.5)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)
    out.sum().backward()
    kept = out != 0
    torch.testing.assert_close(x.grad, kept.float() * 2)
    torch.testing.assert_close(out[kept], 2 * x[kept])
