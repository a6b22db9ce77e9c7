"""The efficient co-attention code against a direct transcription of Lu et al. 2016, Eq. 3-6.

The modules reorder products (``(Q^T W_b) V``), project each image once for all levels and gather
per question; the transcription below does none of that: one question at a time, column vectors as
in the paper, every product in the order written.
"""

from functools import partial

import pytest
import torch

from vqa.models import AlternatingCoAttention, HieCoAtt, ParallelCoAttention, SmallCNN

D, K, N, T = 24, 20, 9, 6
TOLERANCE = 1e-5  # float32, max absolute difference


def softmax(scores: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    if real is not None:
        scores = scores[real]
    a = torch.exp(scores - scores.max())
    out = a / a.sum()
    if real is None:
        return out
    full = torch.zeros(len(real))
    full[real] = out
    return full


def parallel_eq(att: ParallelCoAttention, V: torch.Tensor, Q: torch.Tensor, real: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
    """Eq. 3-4 for one question: V (d, N), Q (d, T), ``real`` (T,) non-padded words; with
    ``bias``, the reference code's biases on W_b V, W_v V and W_q Q."""
    def linear(layer: torch.nn.Linear, X: torch.Tensor) -> torch.Tensor:  # W X (+ b 1^T)
        return layer.weight @ X + (layer.bias[:, None] if layer.bias is not None else 0)

    C = torch.tanh(Q.T @ linear(att.w_b, V))  # (T, N), Eq. 3
    C = C * real[:, None]  # the code's documented departure: padded words have no affinity
    WvV, WqQ = linear(att.w_v, V), linear(att.w_q, Q)  # (k, N), (k, T)
    q_sum, v_sum = WqQ @ C, WvV @ C.T  # (k, N), (k, T)
    if att.affinity_mean:  # the option's departure: means over the real words and the N regions
        q_sum, v_sum = q_sum / real.sum(), v_sum / V.shape[1]
    Hv = torch.tanh(WvV + q_sum)  # (k, N)
    Hq = torch.tanh(WqQ + v_sum)  # (k, T)
    av = softmax((att.w_hv.weight @ Hv)[0] + att.w_hv.bias)
    aq = softmax((att.w_hq.weight @ Hq)[0] + att.w_hq.bias, real)
    return V @ av, Q @ aq, av, aq


def guided_eq(step, X: torch.Tensor, g: torch.Tensor, real: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6: X (d, M), guidance g (d,) (zero for the first step)."""
    Wg = step.w_g.weight if step.w_g is not None else torch.zeros(K, D)
    H = torch.tanh(step.w_x.weight @ X + step.w_x.bias[:, None] + (Wg @ g)[:, None])  # (k, M)
    a = softmax((step.w_h.weight @ H)[0] + step.w_h.bias, real)
    return X @ a, a


def alternating_eq(att: AlternatingCoAttention, V: torch.Tensor, Q: torch.Tensor,
                   real: torch.Tensor) -> tuple[torch.Tensor, ...]:
    s, _ = guided_eq(att.summarise, Q, torch.zeros(D), real)  # step 1, g = 0
    v_hat, av = guided_eq(att.image, V, s, None)  # step 2, g = s
    q_hat, aq = guided_eq(att.question, Q, v_hat, real)  # step 3, g = v^
    return v_hat, q_hat, av, aq


EQUATIONS = {ParallelCoAttention: parallel_eq, AlternatingCoAttention: alternating_eq}


@pytest.mark.parametrize("build", [*EQUATIONS, partial(ParallelCoAttention, affinity_mean=True),
                                   partial(ParallelCoAttention, affinity_mean=True, bias=True)],
                         ids=["parallel", "alternating", "parallel_affinity_mean", "parallel_bias"])
def test_coattention_equals_the_equations(build) -> None:
    torch.manual_seed(0)
    att = build(D, K, dropout=0.0).eval()
    v, q = torch.randn(4, N, D), torch.randn(4, T, D)
    mask = torch.arange(T)[None] < torch.tensor([6, 4, 1, 3])[:, None]
    with torch.no_grad():
        got = att(v, q, mask)
        for b in range(4):
            want = EQUATIONS[type(att)](att, v[b].T, q[b].T, mask[b])
            for x, y in zip(got, want, strict=True):
                assert (x[b] - y).abs().max() < TOLERANCE


@pytest.mark.parametrize("cls", EQUATIONS, ids=lambda c: c.__name__)
def test_hiecoatt_shared_images_equal_the_equations(cls) -> None:
    """Regions projected once per image with fused per-level projections, then gathered per
    question, equal V = tanh(W F) computed for each question and Eq. 3-6 at each level."""
    torch.manual_seed(0)
    model = HieCoAtt(30, 11, image_dim=40, coattention=cls, dim=D, hidden=K, answer_hidden=16,
                     dropout=0.0).eval()
    features = torch.randn(3, N, 40)  # 3 images
    image_index = torch.tensor([0, 0, 2, 1, 2, 2, 0])  # 7 questions
    lengths = torch.tensor([6, 2, 5, 1, 3, 6, 4])
    mask = torch.arange(T)[None] < lengths[:, None]
    question = torch.randint(1, 30, (7, T)) * mask
    with torch.no_grad():
        got = model(question, mask, features=features, image_index=image_index)
        levels = model.question_encoder(question, mask)
        pairs, maps_v, maps_q = [[] for _ in range(3)], [], []
        for b in range(7):
            V = torch.tanh(model.image_proj.weight @ features[image_index[b]].T
                           + model.image_proj.bias[:, None])  # (d, N)
            row_v, row_q = [], []
            for lvl, (Q, att) in enumerate(zip(levels, model.coattention, strict=True)):
                v_hat, q_hat, av, aq = EQUATIONS[cls](att, V, Q[b].T, mask[b])
                pairs[lvl].append((v_hat, q_hat))
                row_v.append(av)
                row_q.append(aq)
            maps_v.append(torch.stack(row_v))
            maps_q.append(torch.stack(row_q))
        logits = model.head([(torch.stack([p[0] for p in lv]), torch.stack([p[1] for p in lv]))
                             for lv in pairs])
    assert (got["logits"] - logits).abs().max() < TOLERANCE
    assert (got["image_attention"] - torch.stack(maps_v)).abs().max() < TOLERANCE
    assert (got["question_attention"] - torch.stack(maps_q)).abs().max() < TOLERANCE


@pytest.mark.parametrize("cls", EQUATIONS, ids=lambda c: c.__name__)
def test_every_parameter_gets_a_gradient(cls) -> None:
    """DDP (without find_unused_parameters) needs every parameter on the path of the loss."""
    model = HieCoAtt(30, 11, SmallCNN((8,), coord_gates=2), cls, dim=D, hidden=K,
                     answer_hidden=16)
    mask = torch.ones(2, T, dtype=torch.bool)
    model(torch.randint(1, 30, (2, T)), mask, image=torch.randn(2, 3, 16, 16))["logits"].sum().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused
