import torch
from transformers import AutoModelForPreTraining, AutoTokenizer, BertForPreTraining

from model.bert import build_model
from model.data import InstanceDataset, PretrainingCollator, ordered_batches
from model.export import export_pretrained
from tests.model.conftest import tiny_config


def test_export_loads_with_auto_classes_and_predicts_the_same(tmp_path, tokenizer_dir, instances_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(0)
    model = build_model(tiny_config(), vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).eval()
    with torch.no_grad():  # move the weights off their init so the comparison means something
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)

    model_dir = export_pretrained(model, model.config, tokenizer_dir, tmp_path / "model")
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert not (tmp_path / "model.tmp").exists()

    loaded = AutoModelForPreTraining.from_pretrained(str(model_dir)).eval()
    assert type(loaded) is BertForPreTraining
    assert loaded.config.architectures == ["BertForPreTraining"]
    loaded_tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer("w1 w2")["input_ids"] == tokenizer("w1 w2")["input_ids"]

    validation = InstanceDataset(instances_dir, "validation")
    first_batch = ordered_batches(len(validation), 16)[0]
    batch = PretrainingCollator(tokenizer.pad_token_id)([validation[i] for i in first_batch])
    with torch.no_grad():
        ours = model(**batch)
        theirs = loaded(
            input_ids=batch["input_ids"],
            token_type_ids=batch["token_type_ids"],
            attention_mask=batch["attention_mask"],
        )
    real = batch["masked_lm_weights"] > 0
    rows = torch.arange(real.shape[0]).unsqueeze(1).expand_as(real)
    their_logits = theirs.prediction_logits[rows[real], batch["masked_lm_positions"][real]]
    torch.testing.assert_close(their_logits, ours.mlm_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(their_logits.argmax(-1), ours.mlm_logits.argmax(-1))
    torch.testing.assert_close(theirs.seq_relationship_logits, ours.nsp_logits, rtol=1e-5, atol=1e-5)


def test_export_replaces_an_existing_model_dir(tmp_path, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    first = build_model(tiny_config(), vocab_size=len(tokenizer), pad_token_id=0)
    second = build_model(tiny_config(), vocab_size=len(tokenizer), pad_token_id=0)
    export_pretrained(first, first.config, tokenizer_dir, tmp_path / "model")
    export_pretrained(second, second.config, tokenizer_dir, tmp_path / "model")
    loaded = AutoModelForPreTraining.from_pretrained(str(tmp_path / "model"))
    assert torch.equal(loaded.bert.pooler.dense.weight, second.bert.pooler.dense.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_trained_export_answers_a_fill_mask_pipeline(tmp_path, instances_dir, tokenizer_dir):
    from transformers import pipeline

    from model.train import pretrain

    pretrain(tiny_config(max_steps=10, eval_every=10, checkpoint_every=10), instances_dir, tokenizer_dir, tmp_path)
    fill = pipeline("fill-mask", model=str(tmp_path / "model"), tokenizer=str(tmp_path / "model"), device="cpu")
    answers = fill("w1 w2 [MASK] w3", top_k=3)
    assert len(answers) == 3
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    assert all(a["token_str"] and "[MASK]" not in a["sequence"] for a in answers)
