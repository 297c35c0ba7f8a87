import pytest
import torch
from transformers import BertForPreTraining

from model.bert import build_model, count_parameters
from model.data import PretrainingCollator
from tests.model.conftest import make_instances, tiny_config


@pytest.fixture
def batch():
    import numpy as np

    from model.data import Instance

    rows = [
        Instance(
            input_ids=np.array(x["input_ids"], dtype=np.uint16),
            token_type_ids=np.array(x["token_type_ids"], dtype=np.uint8),
            masked_lm_positions=np.array(x["masked_lm_positions"], dtype=np.uint16),
            masked_lm_ids=np.array(x["masked_lm_ids"], dtype=np.uint16),
            next_sentence_label=x["next_sentence_label"],
        )
        for x in make_instances(8, seed=3)
    ]
    return PretrainingCollator(pad_token_id=0)(rows)


def test_config_rejects_heads_not_dividing_hidden():
    with pytest.raises(ValueError, match="hidden_size=30 is not divisible by num_attention_heads=4"):
        tiny_config(hidden_size=30, num_attention_heads=4)


def test_config_rejects_warmup_beyond_max_steps():
    with pytest.raises(ValueError, match="warmup_steps=50 exceeds max_steps=30"):
        tiny_config(warmup_steps=50)


def test_output_shapes_and_counts(batch):
    torch.manual_seed(0)
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0)
    out = model(**batch)
    num_predictions = int(batch["masked_lm_weights"].sum())
    assert out.mlm_logits.shape == (num_predictions, 45)
    assert out.nsp_logits.shape == (8, 2)
    assert out.loss.shape == ()
    assert int(out.mlm_count) == num_predictions and int(out.nsp_count) == 8
    assert 0 <= int(out.mlm_correct) <= num_predictions
    torch.testing.assert_close(out.loss, out.mlm_loss + out.nsp_loss)
    out.loss.backward()  # the whole graph is differentiable
    assert model.bert.embeddings.word_embeddings.weight.grad is not None


def test_decoder_is_tied_to_word_embeddings():
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias
    # The tied matrix counts once.
    dense_total = sum(p.numel() for p in set(model.state_dict().values()))
    assert count_parameters(model) <= dense_total


def test_sparse_head_equals_dense_head_on_masked_positions(batch):
    torch.manual_seed(0)
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0).eval()
    dense = BertForPreTraining(model.config).eval()
    dense.load_state_dict(model.state_dict())

    # Labels -100 everywhere except the masked positions, as BertForPreTraining expects.
    labels = torch.full_like(batch["input_ids"], -100)
    real = batch["masked_lm_weights"] > 0
    rows = torch.arange(8).unsqueeze(1).expand_as(real)
    labels[rows[real], batch["masked_lm_positions"][real]] = batch["masked_lm_ids"][real]

    with torch.no_grad():
        ours = model(**batch)
        theirs = dense(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
            labels=labels,
            next_sentence_label=batch["next_sentence_label"],
        )
    dense_at_masked = theirs.prediction_logits[rows[real], batch["masked_lm_positions"][real]]
    torch.testing.assert_close(ours.mlm_logits, dense_at_masked, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.nsp_logits, theirs.seq_relationship_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=1e-5, atol=1e-5)


def test_batch_without_masked_positions_has_finite_loss(batch):
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0)
    batch = {**batch, "masked_lm_weights": torch.zeros_like(batch["masked_lm_weights"])}
    out = model(**batch)
    assert out.mlm_loss.item() == 0.0 and torch.isfinite(out.loss.detach())
    out.loss.backward()


def test_nsp_label_minus_one_and_nsp_off_carry_no_nsp_loss(batch):
    torch.manual_seed(0)
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0)
    labels = batch["next_sentence_label"].clone()
    labels[:3] = -1  # MLM-only instances (RoBERTa-style packing)
    out = model(**{**batch, "next_sentence_label": labels})
    assert int(out.nsp_count) == 5
    kept = torch.nn.functional.cross_entropy(out.nsp_logits[3:], labels[3:])
    torch.testing.assert_close(out.nsp_loss, kept)

    mlm_only = build_model(tiny_config(nsp=False), vocab_size=45, pad_token_id=0)
    out = mlm_only(**batch)
    assert int(out.nsp_count) == 0 and out.nsp_loss.item() == 0.0
    torch.testing.assert_close(out.loss, out.mlm_loss)
    out.loss.backward()  # the unused NSP head still gets a (zero) gradient, as DDP requires
    assert mlm_only.cls.seq_relationship.weight.grad is not None


def test_flops_estimate_of_bert_base_is_six_per_parameter_per_token():
    from model.bert import train_flops
    from model.config import PretrainConfig

    model = build_model(PretrainConfig(size="base"), vocab_size=30522, pad_token_id=0)
    flops = train_flops(model, batch_size=1, seq_len=128, num_predictions=20)
    encoder = 85_054_464  # 12 x (4 x 768^2 + 2 x 768 x 3072) matrix weights
    assert 6 * encoder * 128 < flops < 1.2 * 6 * encoder * 128
    assert model.config._attn_implementation == "sdpa"


def test_static_shapes_give_the_same_losses_and_counts(batch):
    assert (batch["masked_lm_weights"] == 0).any()  # the fixture has padded prediction slots
    torch.manual_seed(0)
    dynamic = build_model(tiny_config(), vocab_size=45, pad_token_id=0).eval()
    static = build_model(tiny_config(), vocab_size=45, pad_token_id=0, static_shapes=True).eval()
    static.load_state_dict(dynamic.state_dict())
    with torch.no_grad():
        ours, theirs = static(**batch), dynamic(**batch)
    assert ours.mlm_logits.shape == (batch["masked_lm_weights"].numel(), 45)  # every slot
    real = batch["masked_lm_weights"].flatten() > 0
    torch.testing.assert_close(ours.mlm_logits[real], theirs.mlm_logits)
    for name in ("loss", "mlm_loss", "nsp_loss", "mlm_loss_sum", "mlm_correct", "mlm_count", "nsp_count"):
        torch.testing.assert_close(getattr(ours, name).double(), getattr(theirs, name).double(), msg=name)


def test_static_shapes_trace_to_one_graph_and_an_unpadded_batch_reaches_sdpa_without_a_mask(batch):
    # Each graph break is a host sync on GPU and a seam torch.compile cannot fuse across; a mask, even
    # all ones, keeps SDPA from flash attention. torch._dynamo.explain traces without compiling.
    model = build_model(tiny_config(), vocab_size=45, pad_token_id=0, static_shapes=True)
    explained = torch._dynamo.explain(model)(**{**batch, "attention_mask": None})
    assert explained.graph_break_count == 0, explained.break_reasons
    sdpa = [n for g in explained.graphs for n in g.graph.nodes if "scaled_dot_product" in str(n.target)]
    assert len(sdpa) == model.config.num_hidden_layers
    assert all(n.kwargs.get("attn_mask") is None for n in sdpa)
