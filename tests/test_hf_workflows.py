"""Hugging Face workflows as users run them, on the tpu and on the CPU: the
Trainer (which picks the tpu by itself, through accelerate), and
``from_pretrained`` of a saved model with ``device_map``."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import torch

from helpers import TPU

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")


def test_hf_trainer_on_tpu_matches_cpu() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=50, n_positions=32, bos_token_id=1, eos_token_id=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    base = transformers.GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, 50, (16,), generator=g) for _ in range(8)]
    data = [{"input_ids": r, "labels": r} for r in rows]
    runs = {}
    for use_cpu in (True, False):
        model = copy.deepcopy(base)
        args = transformers.TrainingArguments(
            output_dir=tempfile.mkdtemp(), per_device_train_batch_size=4, max_steps=4, report_to=[],
            save_strategy="no", use_cpu=use_cpu, seed=0, dataloader_num_workers=0, disable_tqdm=True,
        )  # fmt: skip
        out = transformers.Trainer(model=model, args=args, train_dataset=data).train()
        runs[use_cpu] = (out.training_loss, next(model.parameters()).device, list(model.parameters()))
    (cpu_loss, _, cpu_params), (tpu_loss, device, tpu_params) = runs[True], runs[False]
    assert device.type == TPU  # the Trainer chose the tpu by itself
    assert tpu_loss == pytest.approx(cpu_loss, rel=1e-5)
    for a, b in zip(tpu_params, cpu_params):
        torch.testing.assert_close(a.detach().cpu(), b.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device_map", ["auto", "tpu", {"": 0}], ids=["auto", "tpu", "index"])
def test_from_pretrained_device_map_places_the_model_on_the_tpu(device_map: object, tmp_path: Path) -> None:
    cfg = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    cpu = transformers.LlamaForCausalLM(cfg).eval()
    cpu.save_pretrained(tmp_path)
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))
    # device_map="auto" sizes the devices by torch.accelerator.get_memory_info().
    dev = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, device_map=device_map).eval()
    assert {p.device.type for p in dev.parameters()} == {TPU}
    with torch.no_grad():
        torch.testing.assert_close(dev(ids.to(TPU)).logits.cpu(), cpu(ids).logits, rtol=1e-5, atol=1e-5)
