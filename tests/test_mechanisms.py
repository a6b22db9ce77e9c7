"""Every attention mechanism behind the one interface: shapes, masks, padding invariance, shared
image work, learning one batch; MCAN and BAN against direct transcriptions of their equations."""

import math
from functools import partial

import pytest
import torch

from vqa.models import (
    BilinearAttention,
    HierarchicalCoAttention,
    LSTMQuestionEncoder,
    ModularCoAttention,
    NoAttention,
    ParallelCoAttention,
    StackedAttention,
    TopDownAttention,
    VQAModel,
)

D, C, A, V = 16, 12, 7, 30  # feature size, raw region size, answers, vocabulary
MECHANISMS = {
    "none": NoAttention,
    "san": partial(StackedAttention, hops=2, hidden=D),
    "butd": partial(TopDownAttention, hidden=D),
    "alternating": partial(HierarchicalCoAttention, hidden=D, answer_hidden=D),
    "parallel": partial(HierarchicalCoAttention, coattention=ParallelCoAttention, hidden=D,
                        answer_hidden=D),
    "parallel_shapes": partial(HierarchicalCoAttention, hidden=D, answer_hidden=D,  # its options
                               coattention=partial(ParallelCoAttention, affinity_mean=True,
                                                   bias=True)),
    "mcan": partial(ModularCoAttention, depth=2, heads=4),
    "ban": partial(BilinearAttention, glimpses=3),
}


def build(name: str, dropout: float = 0.0) -> VQAModel:
    torch.manual_seed(0)
    return VQAModel(V, A, MECHANISMS[name], image_dim=C, dim=D, dropout=dropout).eval()


def inputs(b: int = 5, n: int = 9, t: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    """``b`` questions (one empty) about 3 images, the second with its last 3 regions padded."""
    torch.manual_seed(seed)
    lengths = torch.tensor([t, 2, 0, 4, 1][:b])
    mask = torch.arange(t)[None] < lengths[:, None]
    region_mask = torch.ones(3, n, dtype=torch.bool)
    region_mask[1, n - 3:] = False
    return {"question": torch.randint(1, V, (b, t)) * mask, "question_mask": mask,
            "features": torch.randn(3, n, C), "image_index": torch.tensor([0, 1, 1, 2, 0][:b]),
            "region_mask": region_mask}


@pytest.mark.parametrize("name", MECHANISMS)
def test_shapes_masks_and_empty_rows(name: str) -> None:
    model, x = build(name), inputs()
    with torch.no_grad():
        out = model(**x)
    maps = model.maps
    assert out["logits"].shape == (5, A)
    assert out["image_attention"].shape == (5, len(maps.regions), 9)
    assert out["question_attention"].shape == (5, len(maps.words), 6)
    assert all(torch.isfinite(v).all() for v in out.values())  # question 2 has no word
    padded_regions = ~x["region_mask"][x["image_index"]]  # (B, N)
    assert not out["image_attention"].masked_select(padded_regions[:, None]).any()
    assert not out["question_attention"].masked_select(~x["question_mask"][:, None]).any()
    # Maps are distributions over what is real (a question without words: zeros over words, and
    # over regions too where a map is joint over words and regions, as BAN's are).
    if maps.regions:
        sums = out["image_attention"].sum(-1)
        assert torch.allclose(sums[[0, 1, 3, 4]], torch.ones(4, len(maps.regions)), atol=1e-5)
        assert ((sums[2] - 1).abs() < 1e-5).all() or (name == "ban" and not sums[2].any())
    if maps.words:
        sums = out["question_attention"].sum(-1)
        assert torch.allclose(sums[[0, 1, 3, 4]], torch.ones(4, len(maps.words)), atol=1e-5)
        assert not sums[2].any()


@pytest.mark.parametrize("name", MECHANISMS)
def test_padding_changes_nothing(name: str) -> None:
    """Two more padded words and four more padded regions: the same logits and maps."""
    model, x = build(name), inputs()
    padded = dict(x)
    padded["question"] = torch.cat([x["question"], torch.zeros(5, 2, dtype=torch.long)], 1)
    padded["question_mask"] = torch.cat([x["question_mask"], torch.zeros(5, 2, dtype=torch.bool)], 1)
    padded["features"] = torch.cat([x["features"], torch.randn(3, 4, C)], 1)
    padded["region_mask"] = torch.cat([x["region_mask"], torch.zeros(3, 4, dtype=torch.bool)], 1)
    with torch.no_grad():
        a, b = model(**x), model(**padded)
    torch.testing.assert_close(b["logits"], a["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b["image_attention"][..., :9], a["image_attention"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b["question_attention"][..., :6], a["question_attention"],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MECHANISMS)
def test_shared_image_work_equals_one_image_per_question(name: str) -> None:
    """``precompute`` once per image, gathered per question, equals the images repeated."""
    model, x = build(name), inputs()
    idx = x["image_index"]
    with torch.no_grad():
        shared = model(**x)
        repeated = model(x["question"], x["question_mask"], features=x["features"][idx],
                         region_mask=x["region_mask"][idx])
    for key in shared:
        torch.testing.assert_close(repeated[key], shared[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MECHANISMS)
def test_learns_one_batch(name: str) -> None:
    """Each mechanism fits 24 random questions whose answer depends on the image."""
    torch.manual_seed(2)
    model = build(name, dropout=0.1).train()
    features = torch.randn(24, 4, C)
    question = torch.randint(1, V, (24, 5))
    mask = torch.ones(24, 5, dtype=torch.bool)
    answer = (features[:, :, 0].argmax(1) + question[:, 0]) % A
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Annealed to 0: at a constant 1e-2 the last steps jitter, and whether the one question
    # nearest the boundary landed right after them depended on the thread count.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 200)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(model(question, mask, features=features)["logits"],
                                                 answer)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(question, mask, features=features)["logits"].argmax(1) == answer).float().mean()
    assert accuracy == 1.0, f"{name}: {accuracy:.2f} after 200 steps (loss {loss.item():.3f})"


def test_lstm_question_encoder_composes_with_any_mechanism() -> None:
    torch.manual_seed(0)
    model = VQAModel(V, A, MECHANISMS["ban"], question_encoder=partial(LSTMQuestionEncoder,
                     lstm_layers=1), image_dim=C, dim=D, dropout=0.0).eval()
    out = model(**inputs())
    assert out["bilinear_attention"].shape == (5, 3, 6, 9)


# --- MCAN and BAN against their equations, one question at a time -------------------------------


def softmax(scores: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Softmax over the ``real`` entries of a flat score vector; zero elsewhere."""
    out = torch.zeros_like(scores)
    e = torch.exp(scores[real] - scores[real].max())
    out[real] = e / e.sum()
    return out


def linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias


def layer_norm(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def mha_eq(m, x: torch.Tensor, y: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1-2 for one example: queries x (M, D), keys y (S, D); each head's weights (h, M, S)."""
    h = m.heads
    d = x.shape[1] // h
    q, k, v = linear(m.q, x), linear(m.k, y), linear(m.v, y)
    heads, weights = [], []
    for j in range(h):
        cols = slice(j * d, (j + 1) * d)
        w = torch.stack([softmax(q[i, cols] @ k[:, cols].T / math.sqrt(d), real)
                         for i in range(len(x))])  # (M, S)
        heads.append(w @ v[:, cols])
        weights.append(w)
    return linear(m.o, torch.cat(heads, 1)), torch.stack(weights)


def ffn_eq(f, x: torch.Tensor) -> torch.Tensor:
    return linear(f[3], torch.relu(linear(f[0], x)))


def mcan_eq(att: ModularCoAttention, Y: torch.Tensor, X: torch.Tensor, real: torch.Tensor):
    """The encoder-decoder and Eq. 8-9 for one question: regions Y (N, D), words X (T, D)."""
    all_regions = torch.ones(len(Y), dtype=torch.bool)
    for sa in att.encoder:
        X = layer_norm(sa.norm1, X + mha_eq(sa.attention, X, X, real)[0])
        X = layer_norm(sa.norm2, X + ffn_eq(sa.ffn, X))
    for sga in att.decoder:
        Y = layer_norm(sga.norm1, Y + mha_eq(sga.self_attention, Y, Y, all_regions)[0])
        g, weights = mha_eq(sga.guided, Y, X, real)
        Y = layer_norm(sga.norm2, Y + g)
        Y = layer_norm(sga.norm3, Y + ffn_eq(sga.ffn, Y))

    def reduce(r, Z, mask):
        mlp = r.mlp
        alpha = softmax(linear(mlp[3], torch.relu(linear(mlp[0], Z)))[:, 0], mask)  # Eq. 8
        return linear(r.proj, alpha @ Z), alpha

    x, a_q = reduce(att.reduce_q, X, real)
    y, a_v = reduce(att.reduce_v, Y, all_regions)
    return layer_norm(att.norm, x + y), a_v, a_q, weights.mean(0).mean(0)  # Eq. 9


def ban_eq(att: BilinearAttention, Y: torch.Tensor, X: torch.Tensor, real: torch.Tensor):
    """Eq. 10, 5-6 and 14 for one question: regions Y (N, D), words X (T, D)."""
    t, n = len(X), len(Y)
    xu, yv = torch.relu(linear(att.u, X)), torch.relu(linear(att.v, Y))  # (T, kh), (N, kh)
    pairs = torch.tensor([[bool(real[i])] * n for i in range(t)]).flatten()  # (T*N,)
    maps = []
    for g in range(len(att.p)):
        logits = torch.tensor([[float(att.p[g] @ (xu[i] * yv[j])) + float(att.b[g])
                                for j in range(n)] for i in range(t)])  # (T, N), Eq. 10
        maps.append(softmax(logits.flatten(), pairs).view(t, n))
    for g in range(len(att.p)):
        xp, yp = torch.relu(linear(att.u_pool[g], X)), torch.relu(linear(att.v_pool[g], Y))
        f = sum(maps[g][i, j] * xp[i] * yp[j] for i in range(t) for j in range(n))  # Eq. 5-6
        X = X + linear(att.proj[g], f)  # Eq. 14
    return X[real].sum(0), torch.stack(maps)


def test_mcan_equals_its_equations() -> None:
    torch.manual_seed(3)
    att = ModularCoAttention(D, dropout=0.0, depth=2, heads=4).eval()
    v, q = torch.randn(3, 5, D), torch.randn(3, 4, D)
    mask = torch.arange(4)[None] < torch.tensor([4, 2, 1])[:, None]
    with torch.no_grad():
        got = att(v, None, [q], mask)
        for b in range(3):
            z, a_v, a_q, guided = mcan_eq(att, v[b], q[b], mask[b])
            torch.testing.assert_close(got.fused[b], z, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got.regions[b, 0], a_v, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.words[b, 0], a_q, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.words[b, 1], guided, rtol=1e-4, atol=1e-6)


def test_ban_equals_its_equations() -> None:
    torch.manual_seed(4)
    att = BilinearAttention(D, dropout=0.0, glimpses=2, rank=3, hidden=8).eval()
    v, q = torch.randn(3, 5, D), torch.randn(3, 4, D)
    mask = torch.arange(4)[None] < torch.tensor([4, 2, 1])[:, None]
    with torch.no_grad():
        got = att(v, None, [q], mask)
        for b in range(3):
            fused, maps = ban_eq(att, v[b], q[b], mask[b])
            torch.testing.assert_close(got.fused[b], fused, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(got.extra["bilinear_attention"][b], maps, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.regions[b], maps.sum(1), rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(got.words[b], maps.sum(2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", MECHANISMS)
def test_bf16_autocast_follows_fp32(name: str) -> None:
    model, x = build(name), inputs()
    with torch.no_grad():
        full = model(**x)
        with torch.autocast("cpu", torch.bfloat16):
            half = model(**x)
    assert all(torch.isfinite(v.float()).all() for v in half.values())
    torch.testing.assert_close(half["logits"].float(), full["logits"], rtol=0.05, atol=0.05)


def _ddp_worker(rank: int, port: int, results: dict) -> None:
    """Two CPU processes train every mechanism for two steps on different batches (gloo)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        out = {}
        for name in MECHANISMS:
            model = build(name, dropout=0.1).train()
            ddp = torch.nn.parallel.DistributedDataParallel(model)  # every parameter must be used
            opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
            for step in range(2):
                x = inputs(seed=10 + 2 * rank + step)  # each process its own batches and dropout
                loss = ddp(**x)["logits"].logsumexp(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            out[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
        results[rank] = out
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_train_every_mechanism_in_step() -> None:
    """Under DDP every parameter of every mechanism gets a gradient (DDP raises otherwise) and
    both processes hold the same weights after their steps on different batches."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(port, results), nprocs=2, join=True)
    for name in MECHANISMS:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=0, atol=1e-6)
        assert not torch.equal(results[0][name], torch.cat(
            [p.detach().flatten() for p in build(name).parameters()])), name  # they trained


def test_butd_uniform_warm_up_then_learned_attention() -> None:
    torch.manual_seed(0)
    model = VQAModel(V, A, partial(TopDownAttention, hidden=D, uniform_steps=2), image_dim=C,
                     dim=D, dropout=0.0)
    x = inputs()
    real = x["region_mask"][x["image_index"]]  # (B, N)
    uniform = real / real.sum(1, keepdim=True)
    model.eval()  # evaluation neither counts nor learns: uniform while the warm-up lasts
    assert torch.allclose(model(**x)["image_attention"][:, 0], uniform)
    model.train()
    for _ in range(2):
        assert torch.allclose(model(**x)["image_attention"][:, 0], uniform)
    learned = model(**x)["image_attention"][:, 0]  # the third training pass
    assert not torch.allclose(learned, uniform) and (learned[~real] == 0).all()
    assert model.state_dict()["attention.steps"] == 3  # resumed runs continue the count
    assert "attention.steps" not in build("butd").state_dict()  # the paper's model: no buffer
