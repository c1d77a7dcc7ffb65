import numpy as np
import torch
from llmrec.config import ModelConfig
from llmrec.modeling.losses import in_batch_softmax
from llmrec.modeling.scorer import LLMScorer


def _scorer(base: str, **kw) -> LLMScorer:
    torch.manual_seed(0)
    return LLMScorer(ModelConfig(base=base, max_query_tokens=32, max_item_tokens=16, **kw))


def test_forward_backward_trains_only_the_adapter_and_temperature(tiny_base):
    scorer = _scorer(tiny_base)
    trainable = {n for n, p in scorer.named_parameters() if p.requires_grad}
    assert "log_inv_temperature" in trainable
    assert all("lora_" in n for n in trainable - {"log_inv_temperature"})
    assert not any("pooler" in n for n in trainable)
    q, i, scale, _ = scorer(["user likes space", "user likes food"], ["Stellar Drift", "Noodles"])
    assert q.shape == i.shape == (2, 32)
    assert torch.allclose(q.norm(dim=-1), torch.ones(2), atol=1e-5)
    loss = in_batch_softmax(q, i, torch.tensor([0, 1]), scale)
    loss.backward()
    grads = [p.grad for n, p in scorer.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert scorer.pooling == "mean"


def test_encode_is_deterministic_and_leaves_every_module_in_the_mode_it_found(tiny_base):
    """encode() runs in eval mode (dropout off) and switches modes only for a scorer in
    training mode; a head added to a scorer in eval mode is in eval mode too."""
    scorer = _scorer(tiny_base, lora_dropout=0.5)
    texts = ["a user who likes space", "noodles"]
    first = scorer.encode(texts)  # in training mode: switched to eval for the call, and back
    assert all(m.training for m in scorer.modules())
    assert torch.equal(scorer.encode(texts), first)  # no dropout inside encode
    scorer.eval()
    scorer.enable_rating_head()
    assert not any(m.training for m in scorer.modules())
    assert torch.equal(scorer.encode(texts), first)
    assert not any(m.training for m in scorer.modules())


def test_save_and_load_give_the_same_embeddings(tiny_base, tmp_path):
    scorer = _scorer(tiny_base)
    with torch.no_grad():
        for n, p in scorer.named_parameters():
            if "lora_B" in n:
                p.normal_()  # make the adapter matter
        scorer.log_inv_temperature.fill_(3.0)
    before = scorer.encode(["a user"], kind="query")
    scorer.save(tmp_path)
    fresh = _scorer(tiny_base)
    assert not torch.allclose(fresh.encode(["a user"], kind="query"), before)
    fresh.load_trained(tmp_path)
    assert torch.allclose(fresh.encode(["a user"], kind="query"), before, atol=1e-6)
    assert fresh.log_inv_temperature.item() == 3.0


def test_last_token_pooling_for_decoders(tiny_base, tmp_path):
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    tok = AutoTokenizer.from_pretrained(tiny_base)
    cfg = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    GPT2Model(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scorer = _scorer(str(tmp_path), target_modules=("c_attn",))
    assert scorer.pooling == "last"
    short, padded = scorer.encode(["hello"]), scorer.encode(["hello", "a much longer text here"])
    # right padding must not change the pooled token of the shorter text
    assert torch.allclose(short[0], padded[0], atol=1e-5)


def test_a_tuned_text_encoder_gets_its_adapter_on_the_top_layers_only(tiny_base, tmp_path):
    """The sequential design tunes the top ``adapter_layers`` of any base: by regex on BERT,
    by peft's layers_to_transform for named modules (a decoder here)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    tok = AutoTokenizer.from_pretrained(tiny_base)
    cfg = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_layer=3, n_head=2, n_positions=64)
    GPT2Model(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    for base, targets, top in ((str(tmp_path), ("c_attn",), ".h.2."), (tiny_base, (), ".layer.1.")):
        scorer = _scorer(base, target_modules=targets, text_tuning="adapter", adapter_layers=1)
        tuned = {n for n, p in scorer.named_parameters() if p.requires_grad and "lora" in n}
        assert tuned and all(top in n for n in tuned), tuned


def test_in_batch_softmax_masks_duplicate_positives():
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    items = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    scale = torch.tensor(10.0)
    # the same item twice: without masking the loss would be log(2)
    assert in_batch_softmax(q, items, torch.tensor([7, 7]), scale).item() < 1e-6
    assert abs(in_batch_softmax(q, items, torch.tensor([7, 8]), scale).item() - 0.6931) < 1e-3


def test_gradient_checkpointing_gives_the_same_gradients(tiny_base):
    def grads(checkpointing: bool) -> list[torch.Tensor]:
        scorer = _scorer(tiny_base, lora_dropout=0.0)
        with torch.no_grad():
            for n, p in scorer.named_parameters():
                if "lora_B" in n:
                    p.fill_(0.01)
        if checkpointing:
            scorer.enable_gradient_checkpointing()
        scorer.train()
        q, i, scale, _ = scorer(["a user who reads", "another one"], ["a book", "a film"])
        in_batch_softmax(q, i, torch.tensor([0, 1]), scale).backward()
        return [p.grad.clone() for n, p in scorer.named_parameters() if "lora_A" in n]

    plain, checkpointed = grads(False), grads(True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed, strict=True))


def test_logq_correction_subtracts_log_popularity_from_every_in_batch_logit():
    # two queries that look the same to the model; the popular item (id 0) is the target of
    # the first, a rare one of the second. Uncorrected, both rows lose log(2).
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    items = q.clone()
    ids, scale = torch.tensor([0, 1]), torch.tensor(10.0)
    log_q = torch.log(torch.tensor([0.9, 0.1]))
    plain = in_batch_softmax(q, items, ids, scale)
    corrected = in_batch_softmax(q, items, ids, scale, log_q=log_q)
    logits = torch.zeros(2, 2) - log_q[ids].unsqueeze(0)
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(2))
    assert abs(plain.item() - 0.6931) < 1e-3
    assert abs(corrected.item() - expected.item()) < 1e-5
    # the popular target's row now carries most of the loss: log(1 + 9) vs log(1 + 1/9)
    assert abs(corrected.item() - (np.log(10) + np.log(10 / 9)) / 2) < 1e-5
    # uniform popularity is no correction at all
    uniform = in_batch_softmax(q, items, ids, scale, log_q=torch.log(torch.tensor([0.5, 0.5])))
    assert abs(uniform.item() - plain.item()) < 1e-6
