"""VideoCoCa on a tiny random-weight open_clip CoCa: adapters, tuning modes, decoding, weights."""

from __future__ import annotations

import open_clip
import pytest
import torch

from training.model import (
    ADAPTERS,
    TUNINGS,
    ModelConfig,
    VideoCoCa,
    adapter_weights_path,
    build_model,
    save_weights,
)

SIZE = 64  # the tiny model's image size


def make(adapter: str = "attn_pool", tuning: str = "ft", seed: int = 0, **kw) -> VideoCoCa:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        name="tiny", adapter=adapter, tuning=tuning, frames=4, temporal_layers=1, **kw
    )
    model, _, _ = build_model(cfg)
    return model


def images(n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def texts(model: VideoCoCa, n: int = 2) -> torch.Tensor:
    captions = ["a dog runs on the beach", "two people cook pasta in a kitchen", "a red car"]
    return model.tokenizer(captions[:n])


def test_tiny_is_an_open_clip_model():
    model, _, _ = open_clip.create_model_and_transforms("tiny")
    assert isinstance(model, open_clip.CoCa)
    tokens = open_clip.get_tokenizer("tiny")(["a cat"])
    assert tokens.shape == (1, 32)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_one_frame_is_the_image_model(adapter):
    # attn_pool and mean by construction; factorized and joint by their zero initialisation
    model = make(adapter).eval()
    image, text = images(), texts(model)
    with torch.no_grad():
        expected = model.coca(image, text)
        out = model(image[:, None], text)
        embedding = model.encode_video(image[:, None])
    assert torch.allclose(embedding, model.coca.encode_image(image), atol=1e-5)
    assert torch.allclose(out["image_features"], expected["image_features"], atol=1e-5)
    assert torch.allclose(out["text_features"], expected["text_features"], atol=1e-5)
    assert out["logits"].shape == expected["logits"].shape
    assert torch.allclose(out["logits"], expected["logits"], atol=1e-5)
    assert torch.equal(out["labels"], expected["labels"])


@pytest.mark.parametrize("adapter", ["attn_pool", "mean"])
def test_identical_frames_are_one_frame(adapter):
    model = make(adapter).eval()
    image, text = images(), texts(model)
    clip = image[:, None].expand(-1, 4, -1, -1, -1).contiguous()
    with torch.no_grad():
        one = model(image[:, None], text)
        four = model(clip, text)
    assert torch.allclose(four["image_features"], one["image_features"], atol=1e-5)
    assert torch.allclose(four["logits"], one["logits"], atol=1e-4)


def test_frames_differ_change_the_clip_embedding():
    model = make("attn_pool").eval()
    clip = torch.stack([images(seed=1), images(seed=2)], dim=1)
    with torch.no_grad():
        both = model.encode_video(clip)
        first = model.encode_video(clip[:, :1])
    assert not torch.allclose(both, first, atol=1e-3)


def _expected_trainable(name: str, tuning: str) -> bool:
    if tuning == "ft" or name.startswith("temporal_"):
        return True
    pooling = name.startswith(
        ("coca.visual.attn_pool.", "coca.visual.ln_post.", "coca.visual.proj")
    )
    if tuning in ("frozen", "frozen_ft"):
        return pooling or name == "coca.logit_scale"
    return pooling or not name.startswith("coca.visual.")  # lit


@pytest.mark.parametrize("tuning", TUNINGS)
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_one_training_step(adapter, tuning):
    model = make(adapter, tuning, frozen_steps=5).train()
    model.set_tuning(0)
    names = dict(model.named_parameters())
    trainable = {n for n, p in names.items() if p.requires_grad}
    assert trainable == {n for n in names if _expected_trainable(n, tuning)}
    before = {n: p.detach().clone() for n, p in names.items()}

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    video = torch.randn(2, 3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    losses = model.make_loss()(model(video, texts(model)))
    assert set(losses) == {"loss", "contrastive", "caption"}
    assert torch.isfinite(losses["loss"])
    assert torch.allclose(losses["loss"], losses["contrastive"] + losses["caption"])
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()

    # every trainable parameter is used (DDP needs no unused ones), frozen ones get no grad
    assert all(names[n].grad is not None for n in trainable)
    assert all(p.grad is None for n, p in names.items() if n not in trainable)
    assert all(torch.equal(names[n], before[n]) for n in names if n not in trainable)
    assert any(not torch.equal(names[n], before[n]) for n in trainable)


def test_frozen_ft_unfreezes_after_frozen_steps():
    model = make("factorized", "frozen_ft", frozen_steps=2)
    first = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "coca.visual.conv1.weight" not in first
    assert "coca.text.token_embedding.weight" not in first
    assert "coca.visual.attn_pool.query" in first
    assert "temporal_embedding" in first
    assert model.set_tuning(0) is False
    assert model.set_tuning(1) is False
    assert model.set_tuning(2) is True
    assert all(p.requires_grad for p in model.parameters())
    assert model.set_tuning(3) is False

    conv = model.coca.visual.conv1.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.make_loss()(model(images()[:, None], texts(model)))["loss"].backward()
    optimizer.step()
    assert not torch.equal(model.coca.visual.conv1.weight, conv)


def test_lit_freezes_the_image_tower_only():
    model = make("attn_pool", "lit")
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    assert not grads["coca.visual.conv1.weight"]
    assert not grads["coca.visual.transformer.resblocks.0.attn.in_proj_weight"]
    assert grads["coca.visual.attn_pool.query"] and grads["coca.visual.proj"]
    assert grads["coca.text.token_embedding.weight"]
    assert grads["coca.text_decoder.text_projection"]
    assert grads["coca.logit_scale"]


def test_caption_weight_scales_the_caption_loss():
    model = make().eval()
    video, text = images()[:, None], texts(model)
    with torch.no_grad():
        out = model(video, text)
    double = model.make_loss()(out)
    model.cfg.caption_loss_weight = 1.0
    single = model.make_loss()(out)
    assert torch.allclose(double["caption"], 2 * single["caption"])
    assert torch.allclose(double["contrastive"], single["contrastive"])


def test_generate_greedy_and_decode():
    model = make("mean").train()
    video = torch.randn(3, 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    ids = model.generate(video, method="greedy", max_len=12)
    assert model.training  # generate restores the mode
    assert ids.dtype == torch.long and ids.shape[0] == 3 and 5 < ids.shape[1] <= 12
    sot, eot = model.tokenizer.sot_token_id, model.tokenizer.eot_token_id
    assert (ids[:, 0] == sot).all()
    assert all(eot in row for row in ids.tolist())
    assert torch.equal(ids, model.generate(video, method="greedy", max_len=12))
    captions = model.decode_tokens(ids)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert not any("<start_of_text>" in c or "<end_of_text>" in c for c in captions)


def test_decode_tokens_reads_tokenizer_output():
    model = make()
    ids = model.tokenizer(["a dog runs on the beach"])
    assert model.decode_tokens(ids) == ["a dog runs on the beach"]


def test_generate_rejects_bad_arguments():
    model = make()
    video = images()[:, None]
    with pytest.raises(ValueError, match="method"):
        model.generate(video, method="nucleus")
    with pytest.raises(ValueError, match="max_len"):
        model.generate(video, max_len=model.context_length + 1)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_beam_search(adapter):
    model = make(adapter).eval()
    clip = torch.stack([images(seed=1), images(seed=2)], dim=1)
    tok = model.tokenizer
    ids = model.generate(clip, method="beam", max_len=10, min_len=3, num_beams=3)
    assert ids.shape[0] == clip.shape[0] and ids.shape[1] <= 10
    for row in ids.tolist():
        assert row[0] == tok.sot_token_id
        assert tok.eot_token_id in row[3:]  # ended, and not before min_len
    assert len(model.decode_tokens(ids)) == clip.shape[0]

    # one beam is greedy decoding
    greedy = model.generate(clip, method="greedy", max_len=10, min_len=3)
    single = model.generate(clip, method="beam", max_len=10, min_len=3, num_beams=1)
    assert torch.equal(single, greedy)


def test_weights_from_a_local_file(tmp_path):
    model = make("attn_pool", seed=0).eval()
    path = tmp_path / "coca.pt"
    torch.save(model.coca.state_dict(), path)
    torch.manual_seed(123)  # loading, not the seed, must decide the weights
    loaded, _, _ = build_model(ModelConfig(name="tiny", pretrained=str(path)))
    loaded.eval()
    video, text = images()[:, None].expand(-1, 3, -1, -1, -1), texts(model)
    with torch.no_grad():
        assert torch.equal(loaded.encode_video(video), model.encode_video(video))
        assert torch.equal(loaded.encode_text(text), model.encode_text(text))
        assert torch.equal(loaded(video, text)["logits"], model(video, text)["logits"])


def test_save_weights_keeps_the_adapter(tmp_path):
    model = make("factorized", seed=0).eval()
    with torch.no_grad():
        model.temporal_embedding.normal_()
        for p in model.temporal_transformer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "weights.pt"
    assert save_weights(model, path) == [path, adapter_weights_path(path)]
    torch.manual_seed(7)
    cfg = ModelConfig(name="tiny", adapter="factorized", frames=4, temporal_layers=1)
    loaded, _, _ = build_model(ModelConfig(**{**vars(cfg), "pretrained": str(path)}))
    video = torch.randn(2, 4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded.eval().encode_video(video), model.encode_video(video))


def test_build_model_preprocessing():
    _, preprocess, tokenizer = build_model(ModelConfig(name="tiny"))
    assert preprocess["image_size"] == SIZE
    assert preprocess["mean"] == open_clip.OPENAI_DATASET_MEAN
    assert preprocess["std"] == open_clip.OPENAI_DATASET_STD
    assert tokenizer(["x"]).shape == (1, 32)


def test_build_model_rejects_a_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pretrained"):
        build_model(ModelConfig(name="tiny", pretrained=str(tmp_path / "missing.pt")))


def test_too_many_frames_for_the_temporal_embedding():
    model = make("joint")
    with pytest.raises(ValueError, match="model.frames"):
        model.encode_video(torch.zeros(1, 5, 3, SIZE, SIZE))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("adapter", "lstm"),
        ("tuning", "lora"),
        ("name", "ViT-B-32"),
        ("frames", 0),
        ("frozen_steps", -1),
        ("temporal_layers", 0),
        ("caption_loss_weight", -1.0),
        ("pretrained", ""),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"model.{field}"):
        ModelConfig(**{"name": "tiny", field: value})


def test_config_error_lists_allowed_values():
    with pytest.raises(ValueError, match="attn_pool.*mean.*factorized.*joint"):
        ModelConfig(adapter="lstm")
    with pytest.raises(ValueError, match="ft.*frozen.*frozen_ft.*lit"):
        ModelConfig(tuning="lora")


def _contrastive_on_rank(rank: int, world: int, port: int, results) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        model = make("attn_pool")
        video = torch.randn(4, 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
        text = model.tokenizer(["a dog", "a cat on a mat", "rain", "two red cars"])
        half = slice(2 * rank, 2 * rank + 2)
        loss = model.make_loss(rank=rank, world_size=world)(model(video[half], text[half]))
        loss["contrastive"].backward()
        grad = model.coca.visual.attn_pool.query.grad
        dist.all_reduce(grad)  # what DDP does (it then divides by the world size)
        results.put((rank, loss["contrastive"].item(), (grad / world).tolist()))
    finally:
        dist.destroy_process_group()


def test_contrastive_loss_gathers_over_ranks():
    # two gloo ranks with two clips each score every clip against all four texts, as one rank would
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(
        _contrastive_on_rank, args=(2, port, results), nprocs=2, start_method="spawn"
    )
    ranks = {rank: (loss, grad) for rank, loss, grad in (results.get(), results.get())}

    model = make("attn_pool")
    video = torch.randn(4, 2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(6))
    text = model.tokenizer(["a dog", "a cat on a mat", "rain", "two red cars"])
    loss = model.make_loss()(model(video, text))
    loss["contrastive"].backward()
    assert set(ranks) == {0, 1}
    for rank_loss, rank_grad in ranks.values():
        assert rank_loss == pytest.approx(loss["contrastive"].item(), abs=1e-5)
        assert torch.allclose(
            torch.tensor(rank_grad), model.coca.visual.attn_pool.query.grad, atol=1e-6
        )
