"""Shapes, attention normalisation and masking of the co-attention model parts."""

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from vqa.models import (
    AlternatingCoAttention,
    HieCoAtt,
    HierarchicalQuestionEncoder,
    ParallelCoAttention,
    SmallCNN,
    TextInputs,
    TorchvisionEncoder,
)

B, N, T, D = 3, 16, 7, 32
COATTENTIONS = [ParallelCoAttention, AlternatingCoAttention]


def mask_with_lengths(*lengths: int, t: int = T) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("cls", COATTENTIONS)
def test_coattention_shapes_and_normalisation(cls) -> None:
    torch.manual_seed(0)
    mask = mask_with_lengths(7, 4, 1)
    v_hat, q_hat, a_v, a_q = cls(D, 24, dropout=0.0)(torch.randn(B, N, D), torch.randn(B, T, D), mask)
    assert v_hat.shape == (B, D) and q_hat.shape == (B, D)
    assert a_v.shape == (B, N) and a_q.shape == (B, T)
    torch.testing.assert_close(a_v.sum(-1), torch.ones(B))
    torch.testing.assert_close(a_q.sum(-1), torch.ones(B))
    assert (a_q[~mask] == 0).all() and (a_q[mask] > 0).all()


@pytest.mark.parametrize("cls", COATTENTIONS)
def test_padding_content_has_no_effect(cls) -> None:
    """Whatever sits in padded positions, outputs for the real words are unchanged."""
    torch.manual_seed(0)
    att = cls(D, 24, dropout=0.0).eval()
    v, q = torch.randn(B, N, D), torch.randn(B, T, D)
    mask = mask_with_lengths(5, 3, 2)
    q2 = q.clone()
    q2[~mask] = torch.randn(int((~mask).sum()), D) * 10
    for x, y in zip(att(v, q, mask), att(v, q2, mask), strict=True):
        torch.testing.assert_close(x, y)


def test_question_encoder_levels_and_padding() -> None:
    torch.manual_seed(0)
    enc = HierarchicalQuestionEncoder(TextInputs(20), dim=D, lstm_layers=2, dropout=0.0).eval()
    ids = torch.randint(2, 20, (B, T))
    mask = mask_with_lengths(7, 4, 2)
    ids[~mask] = 0
    word, phrase, sentence = enc(ids, mask)
    assert word.shape == phrase.shape == sentence.shape == (B, T, D)
    # Trailing padding does not change the features of real words at any level.
    short = enc(ids[:, :4], mask[:, :4])
    for full, cut in zip((word, phrase, sentence), short, strict=True):
        torch.testing.assert_close(full[1, :4], cut[1, :4])
    # The phrase feature at t sees words t..t+2: changing word 5 moves phrase 3, not phrase 2.
    ids2 = ids.clone()
    ids2[0, 5] = 1 if ids[0, 5] != 1 else 2
    _, phrase2, _ = enc(ids2, mask)
    assert not torch.allclose(phrase[0, 3], phrase2[0, 3])
    torch.testing.assert_close(phrase[0, 2], phrase2[0, 2])


@pytest.mark.parametrize("cls", COATTENTIONS)
def test_hiecoatt_forward(cls) -> None:
    model = HieCoAtt(30, 11, SmallCNN((8, 16)), cls, dim=D, hidden=D,
                     answer_hidden=48)
    mask = mask_with_lengths(7, 5, 3)
    out = model(torch.randint(1, 30, (B, T)) * mask, mask, image=torch.randn(B, 3, 32, 32))
    assert out["logits"].shape == (B, 11)
    assert out["image_attention"].shape == (B, 3, 64)  # 3 levels, 8 x 8 grid
    assert out["question_attention"].shape == (B, 3, T)
    assert not out["logits"].isnan().any()
    torch.testing.assert_close(out["image_attention"].sum(-1), torch.ones(B, 3))
    assert (out["question_attention"][~mask.unsqueeze(1).expand(-1, 3, -1)] == 0).all()


def test_blind_model_ignores_the_image() -> None:
    torch.manual_seed(0)
    model = HieCoAtt(30, 11, SmallCNN((8,)), dim=D, hidden=D, blind=True).eval()
    q, mask = torch.randint(1, 30, (B, T)), torch.ones(B, T, dtype=torch.bool)
    a = model(q, mask, image=torch.randn(B, 3, 16, 16))["logits"]
    b = model(q, mask, image=torch.randn(B, 3, 16, 16))["logits"]
    torch.testing.assert_close(a, b)


def test_cached_features_path() -> None:
    model = HieCoAtt(30, 11, image_dim=20, dim=D, hidden=D)
    out = model(torch.ones(B, T, dtype=torch.long), torch.ones(B, T, dtype=torch.bool),
                features=torch.randn(B, 49, 20))
    assert out["image_attention"].shape == (B, 3, 49)


def test_torchvision_encoder_grid_and_local_weights(tmp_path: Path) -> None:
    """A torchvision backbone cut at layer4 gives the 448 -> 14 x 14 grid; local weights load."""
    torch.manual_seed(0)
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    enc = TorchvisionEncoder("resnet18", weights=str(tmp_path / "r18.pth"))
    assert enc.grid((448, 448)) == (14, 14) and enc.grid((448, 320)) == (14, 10)
    assert enc.out_dim == 512
    torch.testing.assert_close(enc.body.conv1.weight, reference.conv1.weight)
    x = torch.randn(1, 3, 448, 448)
    grid = enc.train()(x)  # frozen: stays in eval mode, no gradients
    assert grid.shape == (1, 196, 512) and not grid.requires_grad
    assert not enc.body.training


def test_small_cnn_gated_coordinates() -> None:
    """With gates forced open, the extra channels are each region's (x, y) in [-1, 1], row-major;
    forced shut, they are zero."""
    cnn = SmallCNN((4, 8), coord_gates=3).eval()
    assert cnn.out_dim == 8 + 2 * 3 and cnn.grid((32, 32)) == (8, 8) and cnn.grid((48, 63)) == (12, 16)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cnn.gates.weight.zero_()
        cnn.gates.bias.fill_(30.0)
        opened = cnn(image)[..., 8:]  # (B, N, 2G)
        cnn.gates.bias.fill_(-30.0)
        shut = cnn(image)[..., 8:]
    assert opened.shape == (2, 64, 6)
    xs = torch.linspace(-1, 1, 8)
    torch.testing.assert_close(opened[0, 8 * 2 + 5, :2], torch.stack([xs[5], xs[2]]))  # row 2, col 5
    torch.testing.assert_close(opened[1, :, 4:], opened[1, :, :2])  # every gate, same coordinates
    assert shut.abs().max() < 1e-9


def test_paper_model_is_the_default_with_the_reference_answer_head() -> None:
    """The reference code builds the answer MLP as recursive_atten(512, 512, 1024, 1000): h^w and
    h^p are d = 512 wide, h^s 1024. Its parameter count, worked out from those definitions (each
    nn.Linear(i, o) holds i * o weights and o biases), is what HieCoAtt with no options has."""

    def linear(i: int, o: int) -> int:
        return i * o + o

    d, (h_w, h_p, h_s), answers = 512, (512, 512, 1024), 1000
    reference = linear(d, h_w) + linear(d + h_w, h_p) + linear(d + h_p, h_s) + linear(h_s, answers)
    assert reference == 2_862_056
    model = HieCoAtt(vocab_size=50, num_answers=1000, image_dim=2048)
    assert sum(p.numel() for p in model.head.parameters()) == reference
    assert isinstance(model.coattention[0], AlternatingCoAttention)  # the reference's default
    assert model.question_encoder.lstm.num_layers == 2 and model.drop.p == 0.5
    # COCO-QA (its config): 512 throughout. One width for all three: older checkpoints' 1024.
    coco = HieCoAtt(vocab_size=50, num_answers=430, image_dim=2048, answer_hidden=512)
    assert coco.head.w_s.out_features == coco.head.w_p.out_features == 512
    old = HieCoAtt(vocab_size=50, num_answers=1000, image_dim=2048, answer_hidden=1024)
    assert (old.head.w_w.out_features, old.head.w_p.in_features) == (1024, 512 + 1024)


def test_level_dropout_drops_whole_levels_per_question_in_training_only() -> None:
    from vqa.models.head import RecursiveAnswerHead

    torch.manual_seed(0)
    head = RecursiveAnswerHead(dim=4, hidden=8, num_answers=3, dropout=0.0, level_dropout=0.5)
    sums = [torch.ones(2000, 4) * (i + 1) for i in range(3)]
    head.train()
    out = head._levels(sums)
    for i, x in enumerate(out):
        rows = x / (i + 1)  # each row all 0 (dropped) or all 1 / (1 - p) = 2 (kept)
        assert set(rows.unique().tolist()) == {0.0, 2.0}
        assert (rows == rows[:, :1]).all()
        assert abs((rows[:, 0] == 0).float().mean().item() - 0.5) < 0.05
    assert not torch.equal(out[0] == 0, out[1] == 0)  # one draw per level
    head.eval()
    assert all(x is y for x, y in zip(head._levels(sums), sums, strict=True))
    paper = RecursiveAnswerHead(dim=4, hidden=8, num_answers=3, dropout=0.0)
    paper.train()
    assert all(x is y for x, y in zip(paper._levels(sums), sums, strict=True))


def test_level_answers_add_each_levels_own_loss_in_training_only() -> None:
    from vqa.data.batch import Batch
    from vqa.training import VQAModule

    torch.manual_seed(0)
    model = HieCoAtt(vocab_size=20, num_answers=7, image_dim=8, dim=16, hidden=16,
                     answer_hidden=32, dropout=0.0, level_answers=0.5)
    question, mask = torch.randint(1, 20, (3, 5)), torch.ones(3, 5, dtype=torch.bool)
    features, answers = torch.randn(3, 4, 8), torch.tensor([1, 6, 2])
    out = model(question, mask, features=features)
    assert out["logits"].shape == (3, 7) and out["level_logits"].shape == (3, 3, 7)
    # each level's own answer reads that level's q + v only
    levels = model.attention(model.regions(None, features), None,
                             model.question_encoder(question, mask), mask).fused
    for i, (v, q) in enumerate(levels):
        assert torch.allclose(out["level_logits"][:, i], model.head.level_heads[i](q + v))
    batch = Batch(question, mask, torch.arange(3), torch.zeros(3, 7), answers, torch.zeros(3, 1),
                  features=features)
    ce = torch.nn.functional.cross_entropy
    expected = ce(out["logits"], answers) + 0.5 * torch.stack(
        [ce(out["level_logits"][:, i], answers) for i in range(3)]).mean()
    assert torch.allclose(VQAModule(model).training_loss(out, batch), expected)
    model.eval()  # evaluation: the paper's answer only
    assert "level_logits" not in model(question, mask, features=features)
    paper = HieCoAtt(vocab_size=20, num_answers=7, image_dim=8, dim=16, hidden=16)
    assert not hasattr(paper.head, "level_heads")
    assert "level_logits" not in paper(question, mask, features=features)
