"""Mixed precision and compilation give the results of the fp32 eager model within tolerance."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import shapes_split

from vqa.data import VQADataModule
from vqa.models import AlternatingCoAttention, HieCoAtt, ParallelCoAttention
from vqa.training import VQAModule

B, N, T, C = 16, 49, 12, 64
VARIANTS = [ParallelCoAttention, AlternatingCoAttention]


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(T)[None] < torch.randint(3, T + 1, (B,), generator=g)[:, None]
    return {"question": torch.randint(1, 50, (B, T), generator=g) * mask, "question_mask": mask,
            "features": torch.randn(B // 4, N, C, generator=g).half(),  # as the cache stores them
            "image_index": torch.arange(B) // 4}


def model(cls: type) -> HieCoAtt:
    torch.manual_seed(0)
    return HieCoAtt(50, 30, image_dim=C, coattention=cls, dim=64, hidden=64, answer_hidden=96,
                    dropout=0.5).eval()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_autocast_matches_fp32(cls: type, dtype: torch.dtype) -> None:
    m, x = model(cls), inputs()
    with torch.no_grad():
        full = m(**x)
        with torch.autocast("cpu", dtype):
            mixed = m(**x)
    # bf16 keeps 8 bits of mantissa: attention weights to about 1e-2, logits to a few 1e-2
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3
    for key in ("image_attention", "question_attention"):
        assert (mixed[key].float() - full[key]).abs().max() < tol, key
    scale = full["logits"].abs().max()
    assert (mixed["logits"].float() - full["logits"]).abs().max() < 2 * tol * scale


def test_float16_features_convert_on_the_model_side() -> None:
    m, x = model(AlternatingCoAttention), inputs()
    with torch.no_grad():
        half = m(**x)
        full = m(**{**x, "features": x["features"].float()})
    torch.testing.assert_close(half["logits"], full["logits"], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_compiled_model_matches_eager(cls: type) -> None:
    m, x = model(cls), inputs()
    with torch.no_grad():
        eager = m(**x)
        m.compile()
        compiled = m(**x)
    for key in ("logits", "image_attention", "question_attention"):
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5)


class Patches(torch.nn.Module):
    """Regions = mean colour of 8 x 8 pixel patches (no CNN needed to check precision)."""

    out_dim = 3

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return image_size[0] // 8, image_size[1] // 8

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(image, 8).flatten(2).transpose(1, 2)  # (B, 64, 3)


@pytest.mark.slow
def test_lightning_bf16_mixed_and_compile_validate_like_fp32(shapes_dir: Path) -> None:
    """`trainer.precision: bf16-mixed` and `model.compile: true`, through Lightning, give the
    fp32 eager validation metrics within tolerance."""
    dm = VQADataModule(shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val"),
                       image_size=64, max_question_length=16, batch_size=50)
    torch.manual_seed(0)
    net = HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, image_encoder=Patches(),
                   coattention=AlternatingCoAttention, dim=32, hidden=32, answer_hidden=32)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    results = {}
    for name, precision, compile_ in [("fp32", "32-true", False), ("bf16", "bf16-mixed", False),
                                      ("compiled", "32-true", True)]:
        net.load_state_dict(state)
        trainer = pl.Trainer(precision=precision, logger=False, enable_progress_bar=False,
                             enable_model_summary=False)
        results[name] = trainer.validate(VQAModule(net, loss="softmax", compile=compile_), dm,
                                         verbose=False)[0]
    for name in ("bf16", "compiled"):
        tol = 2e-2 if name == "bf16" else 1e-5
        assert results[name]["val/loss"] == pytest.approx(results["fp32"]["val/loss"], rel=tol)
        assert abs(results[name]["val/vqa_acc"] - results["fp32"]["val/vqa_acc"]) <= (
            3.0 if name == "bf16" else 0.0)
