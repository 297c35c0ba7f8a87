"""Export the trained model as a plain transformers BertForPreTraining checkpoint plus its tokenizer."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from torch import nn
from transformers import AutoTokenizer, BertConfig, BertForPreTraining

logger = logging.getLogger(__name__)


def to_hf_pretraining_model(model: nn.Module, config: BertConfig) -> BertForPreTraining:
    """A CPU BertForPreTraining carrying `model`'s weights (names must match exactly: strict load)."""
    hf_config = BertConfig.from_dict(config.to_dict())
    hf_config.architectures = ["BertForPreTraining"]
    hf_model = BertForPreTraining(hf_config)
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval()


def export_pretrained(model: nn.Module, config: BertConfig, tokenizer_dir: Path, model_dir: Path) -> Path:
    """Write `model_dir` (config.json + model.safetensors + tokenizer files) atomically; returns it.

    AutoModelForPreTraining.from_pretrained(model_dir) and AutoTokenizer.from_pretrained(model_dir)
    load the result. An existing `model_dir` is replaced only once the new one is complete.
    """
    model_dir = Path(model_dir)
    tmp = model_dir.with_name(model_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    # Loading then saving (rather than copying files) proves the tokenizer loads before we publish it.
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    to_hf_pretraining_model(model, config).save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if model_dir.exists():
        old = model_dir.with_name(model_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        model_dir.rename(old)
        tmp.rename(model_dir)
        shutil.rmtree(old)
    else:
        tmp.rename(model_dir)
    logger.info("exported BertForPreTraining + tokenizer to %s", model_dir)
    return model_dir
