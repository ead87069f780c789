"""VideoCoCa: open_clip's CoCa applied to clips of T frames, with the paper's video adapters.

The image tower, text tower, captioning decoder, tokenizer, loss and pretrained weights are
open_clip's own; this module only decides how the frames of a clip become the pooled
embedding and the decoder tokens that `CoCa._encode_image` returns for one image, and which
parameters train in each tuning mode.

Tensor names carry their shape as a suffix:
    B  clips in the batch               T  frames per clip
    F  frames of the batch (B * T)      C, H, W  channels, pixels
    N  tokens of one frame (class + patches)
    X  tokens of a whole clip (T * N)
    D  width of the image tower         E  embedding width (CoCa's embed_dim, = decoder width)
    M  decoder tokens                   L  text tokens       V  vocabulary
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import CoCaLoss
from open_clip.transformer import Transformer
from open_clip.utils import to_2tuple
from torch import nn

log = logging.getLogger(__name__)

TINY = "tiny"
Adapter = Literal["attn_pool", "mean", "factorized", "joint"]
Tuning = Literal["ft", "frozen", "frozen_ft", "lit"]
ADAPTERS: tuple[str, ...] = get_args(Adapter)
TUNINGS: tuple[str, ...] = get_args(Tuning)

# a CoCa small enough for CPU tests; vocab and tokenizer are open_clip's defaults
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 16,
        "width": 64,
        "layers": 2,
        "head_width": 16,
        "attentional_pool": True,
        "attn_pooler_queries": 9,
        "attn_pooler_heads": 4,
        "output_tokens": True,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 64,
        "heads": 4,
        "layers": 2,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 64,
        "heads": 4,
        "layers": 2,
        "attn_pooler_heads": 4,
    },
    "custom_text": True,
}

# parameters of the image tower that pool its tokens: trainable in "frozen" and "lit"
_POOLING_PREFIXES = (
    "coca.visual.attn_pool.",
    "coca.visual.attn_pool_contrastive.",
    "coca.visual.ln_post.",
    "coca.visual.proj",
)
_IMAGE_TOWER_PREFIX = "coca.visual."
_ADAPTER_PREFIX = "temporal_"
_LOGIT_NAMES = ("coca.logit_scale", "coca.logit_bias")


def register_tiny_config() -> None:
    """Make "tiny" a model name of open_clip (create_model_and_transforms, get_tokenizer)."""
    # factory._MODEL_CONFIGS is rebound on every rescan, so look it up each time
    configs = open_clip.factory._MODEL_CONFIGS
    if TINY not in configs:
        configs[TINY] = TINY_CONFIG


register_tiny_config()


def coca_model_names() -> list[str]:
    """open_clip CoCa names whose image tower has the attentional pooler VideoCoCa relies on."""
    register_tiny_config()
    names = []
    for name in open_clip.list_models():
        config = open_clip.get_model_config(name) or {}
        if "multimodal_cfg" in config and config["vision_cfg"].get("attentional_pool"):
            names.append(name)
    return names


def get_tokenizer(name: str) -> Any:
    """open_clip's tokenizer of model `name` ("tiny" included)."""
    register_tiny_config()
    return open_clip.get_tokenizer(name)


@dataclass
class ModelConfig:
    """The model part of the training config: which CoCa, which weights, adapter and tuning."""

    name: str = field(
        default="coca_ViT-B-32",
        metadata={"help": 'open_clip CoCa model name, e.g. "coca_ViT-B-32"; "tiny" for tests'},
    )
    pretrained: str | None = field(
        default=None,
        metadata={"help": "open_clip pretrained tag (laion2b_s13b_b90k) or a local weights file"},
    )
    adapter: Adapter = field(
        default="attn_pool",
        metadata={"help": "how frames become one clip: attn_pool, mean, factorized or joint"},
    )
    tuning: Tuning = field(
        default="lit",
        metadata={
            "help": "what trains: ft (all), frozen (poolers), frozen_ft, lit (no image tower)"
        },
    )
    frozen_steps: int = field(
        default=0,
        metadata={"help": "frozen_ft: steps trained frozen before everything trains", "min": 0},
    )
    frames: int = field(
        default=8,
        metadata={"help": "frames per clip (T); the most the temporal embeddings hold", "min": 1},
    )
    temporal_layers: int = field(
        default=4,
        metadata={"help": "factorized adapter: layers of the temporal transformer", "min": 1},
    )
    caption_loss_weight: float = field(
        default=2.0, metadata={"help": "weight of the captioning (next token) loss", "min": 0.0}
    )
    contrastive_loss_weight: float = field(
        default=1.0, metadata={"help": "weight of the video-text contrastive loss", "min": 0.0}
    )

    def __post_init__(self) -> None:
        names = coca_model_names()
        if self.name not in names:
            raise ValueError(f"model.name: {self.name!r} is not an open_clip CoCa; one of {names}")
        if self.pretrained is not None and (
            not isinstance(self.pretrained, str) or not self.pretrained.strip()
        ):
            raise ValueError("model.pretrained: None, an open_clip tag or a weights file path")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"model.adapter: {self.adapter!r} is not one of {list(ADAPTERS)}")
        if self.tuning not in TUNINGS:
            raise ValueError(f"model.tuning: {self.tuning!r} is not one of {list(TUNINGS)}")
        for name in ("frozen_steps", "frames", "temporal_layers"):
            value = getattr(self, name)
            low = 0 if name == "frozen_steps" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"model.{name}: {value!r} must be an integer >= {low}")
        for name in ("caption_loss_weight", "contrastive_loss_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"model.{name}: {value!r} must be a finite number >= 0")
        if self.caption_loss_weight == 0 and self.contrastive_loss_weight == 0:
            raise ValueError("model.caption_loss_weight, model.contrastive_loss_weight: not both 0")


class VideoCoCaLoss(nn.Module):
    """open_clip's CoCaLoss on a VideoCoCa output; contrastive logits gathered over DDP ranks."""

    def __init__(
        self,
        caption_loss_weight: float,
        contrastive_loss_weight: float,
        pad_id: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.coca_loss = CoCaLoss(
            caption_loss_weight=caption_loss_weight,
            clip_loss_weight=contrastive_loss_weight,
            pad_id=pad_id,
            gather_with_grad=True,
            rank=rank,
            world_size=world_size,
        )

    def forward(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`{"loss", "contrastive", "caption"}`, the weights already applied."""
        parts = self.coca_loss(
            image_features=out["image_features"],
            text_features=out["text_features"],
            logits=out["logits"].float(),
            labels=out["labels"],
            logit_scale=out["logit_scale"],
            output_dict=True,
        )
        contrastive, caption = parts["contrastive_loss"], parts["caption_loss"]
        return {"loss": contrastive + caption, "contrastive": contrastive, "caption": caption}


class VideoCoCa(nn.Module):
    """A CoCa whose image side takes clips `video_BTCHW` (normalised frames) through an adapter.

    Tuning modes (`set_tuning`), with the adapter's own parameters always trainable:
      ft         everything trains;
      frozen     only the pooling head of the image tower (attentional poolers, ln_post, proj)
                 and the logit scale train;
      frozen_ft  frozen for `frozen_steps` steps, then ft;
      lit        the image tower is frozen except its pooling head, as in the VideoCoCa paper;
                 the text tower, the decoder and the logit scale train.
    Frozen parameters get `requires_grad=False`, so they have no grad and an optimizer over all
    parameters leaves them untouched; a DDP wrapper must be rebuilt when `set_tuning` says the
    trainable set changed (DDP only tracks what needed grads when it was built).
    """

    def __init__(self, coca: open_clip.CoCa, cfg: ModelConfig, tokenizer: Any = None) -> None:
        super().__init__()
        visual = coca.visual
        if not all(hasattr(visual, a) for a in ("_embeds", "transformer", "_pool", "proj")):
            raise ValueError(f"model.name: {cfg.name} has no open_clip ViT image tower")
        if getattr(visual, "attn_pool", None) is None or not visual.output_tokens:
            raise ValueError(f"model.name: {cfg.name} has no attentional pooler with tokens")
        self.coca = coca
        self.cfg = cfg
        self.tokenizer = tokenizer if tokenizer is not None else get_tokenizer(cfg.name)
        embed_dim = coca.text_decoder.width
        width = visual.transformer.width

        if cfg.adapter == "factorized":
            heads = embed_dim // 64 if embed_dim % 64 == 0 else 1
            self.temporal_embedding = nn.Parameter(torch.zeros(cfg.frames, embed_dim))
            self.temporal_transformer = Transformer(embed_dim, cfg.temporal_layers, heads)
            # zero residual branches: at initialisation the adapter is mean pooling over time
            for block in self.temporal_transformer.resblocks:
                for linear in (block.attn.out_proj, block.mlp.c_proj):
                    nn.init.zeros_(linear.weight)
                    nn.init.zeros_(linear.bias)
        elif cfg.adapter == "joint":
            # zero at initialisation: one frame gives exactly the image model's output
            self.temporal_embedding = nn.Parameter(torch.zeros(cfg.frames, width))

        self._trainable: frozenset[str] | None = None
        self.set_tuning(0)

    @property
    def context_length(self) -> int:
        return self.coca.context_length

    def trainable_names(self, step: int) -> frozenset[str]:
        """Names of the parameters that train at `step` in this tuning mode."""
        mode = self.cfg.tuning
        if mode == "frozen_ft":
            mode = "frozen" if step < self.cfg.frozen_steps else "ft"
        names = set()
        for name, _ in self.named_parameters():
            pooling = name.startswith(_POOLING_PREFIXES)
            if (
                mode == "ft"
                or name.startswith(_ADAPTER_PREFIX)
                or (mode == "frozen" and (pooling or name in _LOGIT_NAMES))
                or (mode == "lit" and (pooling or not name.startswith(_IMAGE_TOWER_PREFIX)))
            ):
                names.add(name)
        return frozenset(names)

    def set_tuning(self, step: int) -> bool:
        """Set `requires_grad` for `step`; True when the trainable set changed."""
        names = self.trainable_names(step)
        if names == self._trainable:
            return False
        for name, param in self.named_parameters():
            param.requires_grad_(name in names)
        self._trainable = names
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        log.info(
            "tuning %s at step %d: %d of %d parameters train",
            self.cfg.tuning,
            step,
            trainable,
            total,
        )
        return True

    def _frames(self, video_BTCHW: torch.Tensor) -> torch.Tensor:
        if video_BTCHW.ndim != 5:
            raise ValueError(f"video must be [B, T, C, H, W], got {list(video_BTCHW.shape)}")
        T = video_BTCHW.shape[1]
        if self.cfg.adapter in ("factorized", "joint") and T > self.cfg.frames:
            raise ValueError(
                f"{T} frames per clip, the {self.cfg.adapter} adapter holds at most "
                f"model.frames={self.cfg.frames}"
            )
        return video_BTCHW.flatten(0, 1)

    def _pool_tokens(self, x_BXD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image tower's pooling head on any set of tokens: (latent_BE, tokens_BME)."""
        visual = self.coca.visual
        pooled_BE, tokens_BME = visual._pool(x_BXD)
        return pooled_BE @ visual.proj, tokens_BME

    def encode_video_tokens(
        self, video_BTCHW: torch.Tensor, normalize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What `CoCa._encode_image` gives for an image, for a clip: (latent_BE, tokens_BME)."""
        B, T = video_BTCHW.shape[:2]
        x_FCHW = self._frames(video_BTCHW)
        visual = self.coca.visual
        adapter = self.cfg.adapter

        if adapter == "attn_pool":
            x_FND = visual.transformer(visual._embeds(x_FCHW))
            latent_BE, tokens_BME = self._pool_tokens(x_FND.reshape(B, -1, x_FND.shape[-1]))
        elif adapter == "joint":
            x_FND = visual._embeds(x_FCHW)
            x_BTND = x_FND.unflatten(0, (B, T))
            x_BTND = x_BTND + self.temporal_embedding[:T, None, :].to(x_BTND.dtype)
            x_BXD = visual.transformer(x_BTND.flatten(1, 2))
            latent_BE, tokens_BME = self._pool_tokens(x_BXD)
        else:
            # the tower itself, not coca._encode_image, which beam search swaps for this method
            latent_FE, tokens_FME = visual(x_FCHW)
            latent_BTE = latent_FE.unflatten(0, (B, T))
            tokens_BTME = tokens_FME.unflatten(0, (B, T))
            if adapter == "mean":
                latent_BE, tokens_BME = latent_BTE.mean(1), tokens_BTME.mean(1)
            else:
                latent_BTE = latent_BTE + self.temporal_embedding[:T].to(latent_BTE.dtype)
                latent_BE = self.temporal_transformer(latent_BTE).mean(1)
                tokens_BME = tokens_BTME.flatten(1, 2)

        if normalize:
            latent_BE = F.normalize(latent_BE, dim=-1)
        return latent_BE, tokens_BME

    def encode_video(self, video_BTCHW: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """The clip's contrastive embedding [B, E]."""
        return self.encode_video_tokens(video_BTCHW, normalize=normalize)[0]

    def encode_text(self, text_BL: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """CoCa's text embedding [B, E]."""
        return self.coca.encode_text(text_BL, normalize=normalize)

    def forward(self, video_BTCHW: torch.Tensor, text_BL: torch.Tensor) -> dict[str, torch.Tensor]:
        """CoCa.forward for clips: image_features, text_features, logits, labels, logit_scale.

        `logits` [B, L-1, V] predict `labels` = text[:, 1:]; the shift is done here, not by
        open_clip, whose versions disagree on who does it.
        """
        latent_BE, tokens_BME = self.encode_video_tokens(video_BTCHW)
        out = self.coca(
            None, text_BL, image_latent=latent_BE, image_embs=tokens_BME, output_labels=False
        )
        out["logits"] = out["logits"][:, :-1]
        out["labels"] = text_BL[:, 1:]
        return out

    def make_loss(self, rank: int = 0, world_size: int = 1) -> VideoCoCaLoss:
        """The training loss for this model; DDP callers pass their rank and world size."""
        return VideoCoCaLoss(
            caption_loss_weight=self.cfg.caption_loss_weight,
            contrastive_loss_weight=self.cfg.contrastive_loss_weight,
            pad_id=self.coca.pad_id,
            rank=rank,
            world_size=world_size,
        )

    @torch.no_grad()
    def generate(
        self,
        video_BTCHW: torch.Tensor,
        method: str = "greedy",
        max_len: int = 30,
        min_len: int = 5,
        num_beams: int = 4,
    ) -> torch.Tensor:
        """Caption token ids [B, <= max_len]: start token, text, end token, then padding.

        Greedy or beam search (captions ranked by mean token log-probability), both on CoCa's
        forward: open_clip's own beam search needs a `transformers` release that still has
        BeamSearchScorer, which 4.57 no longer does.
        """
        if not 1 < min_len < max_len <= self.context_length:
            raise ValueError(
                f"need 1 < min_len ({min_len}) < max_len ({max_len}) <= {self.context_length}"
            )
        sot = self.tokenizer.sot_token_id
        eot = self.tokenizer.eot_token_id
        pad = self.coca.pad_id
        was_training = self.training
        self.eval()
        try:
            if method == "beam":
                return self._beam(video_BTCHW, max_len, min_len, sot, eot, pad, num_beams)
            if method != "greedy":
                raise ValueError(f"generate method: {method!r} is not one of ['greedy', 'beam']")
            return self._greedy(video_BTCHW, max_len, min_len, sot, eot, pad)
        finally:
            self.train(was_training)

    def _greedy(
        self, video_BTCHW: torch.Tensor, max_len: int, min_len: int, sot: int, eot: int, pad: int
    ) -> torch.Tensor:
        latent_BE, tokens_BME = self.encode_video_tokens(video_BTCHW)
        B = video_BTCHW.shape[0]
        ids_BL = torch.full((B, 1), sot, dtype=torch.long, device=video_BTCHW.device)
        done_B = torch.zeros(B, dtype=torch.bool, device=video_BTCHW.device)
        while ids_BL.shape[1] < max_len and not done_B.all():
            logits_BV = self.coca(
                None, ids_BL, image_latent=latent_BE, image_embs=tokens_BME, output_labels=False
            )["logits"][:, -1]
            logits_BV[:, pad] = -math.inf  # padding is never a training target
            if ids_BL.shape[1] < min_len:
                logits_BV[:, eot] = -math.inf
            next_B = logits_BV.argmax(-1)
            if ids_BL.shape[1] == max_len - 1:
                next_B.fill_(eot)  # every caption ends with the end token, as in CoCa.generate
            next_B = torch.where(done_B, torch.full_like(next_B, pad), next_B)
            ids_BL = torch.cat([ids_BL, next_B[:, None]], dim=1)
            done_B |= next_B == eot
        return ids_BL

    def _beam(
        self,
        video_BTCHW: torch.Tensor,
        max_len: int,
        min_len: int,
        sot: int,
        eot: int,
        pad: int,
        num_beams: int,
    ) -> torch.Tensor:
        """Beam search; a caption's score is its mean token log-probability."""
        if num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, got {num_beams}")
        latent_BE, tokens_BME = self.encode_video_tokens(video_BTCHW)
        B, K, device = video_BTCHW.shape[0], num_beams, video_BTCHW.device
        latent_XE = latent_BE.repeat_interleave(K, dim=0)  # X = B * K beams
        tokens_XME = tokens_BME.repeat_interleave(K, dim=0)
        ids_XL = torch.full((B * K, 1), sot, dtype=torch.long, device=device)
        score_BK = torch.full((B, K), -math.inf, device=device)
        score_BK[:, 0] = 0.0  # one live beam per clip at the start
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
        while ids_XL.shape[1] < max_len and any(len(f) < K for f in finished):
            logits_XV = self.coca(
                None, ids_XL, image_latent=latent_XE, image_embs=tokens_XME, output_labels=False
            )["logits"][:, -1].float()
            logp_XV = torch.log_softmax(logits_XV, dim=-1)
            logp_XV[:, pad] = -math.inf
            if ids_XL.shape[1] < min_len:
                logp_XV[:, eot] = -math.inf
            if ids_XL.shape[1] == max_len - 1:  # the last position can only end the caption
                keep = logp_XV[:, eot].clone()
                logp_XV.fill_(-math.inf)
                logp_XV[:, eot] = keep
            V = logp_XV.shape[1]
            total_BKV = score_BK[..., None] + logp_XV.view(B, K, V)
            top_score_BC, top_index_BC = total_BKV.view(B, K * V).topk(2 * K, dim=1)
            next_ids, next_scores = [], []
            for b in range(B):
                beams: list[tuple[float, int, int]] = []
                for value, index in zip(top_score_BC[b].tolist(), top_index_BC[b].tolist()):
                    if value == -math.inf or len(beams) == K:
                        break
                    beam, token = divmod(index, V)
                    if token == eot:
                        path = ids_XL[b * K + beam].tolist() + [eot]
                        finished[b].append((value / (len(path) - 1), path))
                    else:
                        beams.append((value, beam, token))
                if len(finished[b]) >= K:  # this clip is done: its beams stop growing
                    beams = []
                while len(beams) < K:  # fewer live candidates than beams: pad with dead ones
                    beams.append((-math.inf, 0, pad))
                next_scores.append([v for v, _, _ in beams])
                next_ids.extend(
                    torch.cat([ids_XL[b * K + beam], ids_XL.new_tensor([token])])
                    for _, beam, token in beams
                )
            score_BK = torch.tensor(next_scores, device=device)
            ids_XL = torch.stack(next_ids)
        best = []
        for b in range(B):
            if not finished[b]:  # no beam ended: close the best live one
                path = ids_XL[b * K + int(score_BK[b].argmax())].tolist() + [eot]
                finished[b].append((0.0, path))
            best.append(max(finished[b], key=lambda c: c[0])[1])
        out_BL = torch.full((B, max(map(len, best))), pad, dtype=torch.long, device=device)
        for b, path in enumerate(best):
            out_BL[b, : len(path)] = torch.tensor(path, device=device)
        return out_BL

    def decode_tokens(self, ids_BL: torch.Tensor) -> list[str]:
        """Captions from token ids: cut at the end token, start token and padding dropped."""
        sot, eot, pad = self.tokenizer.sot_token_id, self.tokenizer.eot_token_id, self.coca.pad_id
        captions = []
        for row in ids_BL.tolist():
            if eot in row:
                row = row[: row.index(eot)]
            row = [t for t in row if t not in (sot, pad)]
            captions.append(self.tokenizer.decode(row).strip())
        return captions


def adapter_weights_path(path: str | Path) -> Path:
    """Where `save_weights` puts the adapter's own parameters, next to the CoCa weights."""
    path = Path(path)
    return path.with_name(path.name + ".adapter")


def save_weights(model: VideoCoCa, path: str | Path) -> list[Path]:
    """CoCa weights to `path` (open_clip loads them with pretrained=path), adapter beside it."""
    path = Path(path)
    torch.save(model.coca.state_dict(), path)
    written = [path]
    adapter = {k: v for k, v in model.state_dict().items() if k.startswith(_ADAPTER_PREFIX)}
    if adapter:
        torch.save(adapter, adapter_weights_path(path))
        written.append(adapter_weights_path(path))
    return written


def build_model(
    cfg: ModelConfig, device: str | torch.device = "cpu"
) -> tuple[VideoCoCa, dict[str, Any], Any]:
    """VideoCoCa from open_clip's CoCa `cfg.name` with weights `cfg.pretrained`.

    Returns:
        the model, its preprocessing (image_size, mean, std, interpolation, resize_mode) and
        its tokenizer.
    """
    register_tiny_config()
    pretrained = cfg.pretrained
    if pretrained is not None:
        tags = open_clip.list_pretrained_tags_by_model(cfg.name)
        if pretrained not in tags and not os.path.isfile(pretrained):
            raise FileNotFoundError(
                f"model.pretrained: {pretrained!r} is neither a file nor a tag of {cfg.name} "
                f"({tags})"
            )
    coca, _, _ = open_clip.create_model_and_transforms(
        cfg.name, pretrained=pretrained, device=device
    )
    if pretrained is None:
        # open_clip 3.3.0 leaves the decoder's output projection as torch.empty (its
        # MultimodalTransformer.init_parameters is never called): give it the init it meant
        decoder = coca.text_decoder
        nn.init.normal_(decoder.text_projection, std=decoder.width**-0.5)
    tokenizer = get_tokenizer(cfg.name)
    model = VideoCoCa(coca, cfg, tokenizer).to(device)

    if pretrained is not None and adapter_weights_path(pretrained).is_file():
        state = torch.load(adapter_weights_path(pretrained), map_location=device, weights_only=True)
        own = {k: v.shape for k, v in model.state_dict().items() if k.startswith(_ADAPTER_PREFIX)}
        if {k: v.shape for k, v in state.items()} == own:
            model.load_state_dict(state, strict=False)
            log.info("loaded the %s adapter from %s", cfg.adapter, adapter_weights_path(pretrained))
        else:
            log.warning(
                "%s does not fit the %s adapter; its weights are left out",
                adapter_weights_path(pretrained),
                cfg.adapter,
            )

    pp = open_clip.get_model_preprocess_cfg(coca)
    height, width = to_2tuple(pp["size"])
    preprocess = {
        "image_size": height if height == width else (height, width),
        "mean": tuple(pp["mean"]),
        "std": tuple(pp["std"]),
        "interpolation": pp.get("interpolation", "bicubic"),
        "resize_mode": pp.get("resize_mode", "shortest"),
    }
    return model, preprocess, tokenizer
