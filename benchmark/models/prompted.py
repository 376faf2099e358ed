"""A SAM-family segmenter driven by one text prompt, as in S-SAM and SALT, or by box / point prompts.

image -> image encoder -> embedding; frozen text embedding -> TAL -> one sparse prompt token;
the prompt encoder contributes only its "no mask" dense embedding and positional encoding; the mask
decoder turns embedding + token into logits, upsampled to the input size. Every backbone
(LiteMedSAM, SAM ViT, SAM2) is wired through this one module so that methods see the same graph.

A row with a box or point prompt (benchmark.prompting) passes each image's prompt, in pixels of the
network input, to forward: the backbone's own prompt encoder embeds it (its input_image_size is the
network input size), after the TAL token when the row keeps text (`use_text`). An image whose
ground-truth prompt is absent (an empty mask) is predicted background everywhere (ABSENT_LOGIT).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.embedding_cache import EmbeddingCache
from benchmark.models.text import TextAffineLayer

TAL_PREFIX = "tal."  # the TAL's parameter names: the trainable extra every backbone lists
ABSENT_LOGIT = -1.0e4  # an image without its oracle prompt: background everywhere, and no gradient

def segment(model: nn.Module, image: torch.Tensor, prompt: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """A cell model's logits: a box- or point-prompted row gets its prompt, a text row or a baseline
    (whose forward takes the image alone) none."""
    return model(image) if prompt is None else model(image, prompt)


class TextPromptedSAM(nn.Module):
    """forward(image in [0,1], B x 3 x S x S, prompt: a box or point batch or None) -> mask logits
    B x 1 x S x S."""

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        tal: TextAffineLayer,
        text_embedding: torch.Tensor,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.tal = tal
        self.register_buffer("text_embedding", text_embedding.reshape(1, -1).clone(), persistent=False)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        # set by the engine while training a frozen encoder on unaugmented images (models.embedding_cache)
        self.embedding_cache: EmbeddingCache | None = None
        # whether the TAL's text token leads the sparse prompt (False: a box- or point-only row)
        self.use_text = True

    def prompt_token(self, batch: int) -> torch.Tensor:
        return self.tal(self.text_embedding.expand(batch, -1)).unsqueeze(1)

    def image_features(self, image: torch.Tensor):
        """The image encoder's output on the normalised image, from the cache when one is set."""
        pixels = (image - self.pixel_mean) / self.pixel_std
        if self.embedding_cache is None:
            return self.image_encoder(pixels)
        return self.embedding_cache(self.image_encoder, image, pixels)

    def encode(self, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The image embedding plus any extra inputs this mask decoder takes (SAM2: high-res features)."""
        return self.image_features(image), {}

    def sparse_prompt(self, batch: int, prompt: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """The sparse tokens: the TAL's text token (when `use_text`), then the prompt encoder's
        tokens of the box (two corners) or of the points (SAM pads points with one "not a point")."""
        tokens = [self.prompt_token(batch)] if self.use_text else []
        if prompt is not None:
            points = (prompt["points"], prompt["labels"]) if "points" in prompt else None
            tokens.append(self.prompt_encoder(points=points, boxes=prompt.get("box"), masks=None)[0])
        if not tokens:  # no prompt at all (what counting a box row's GFLOPs without an image's prompt runs)
            return self.prompt_encoder.no_mask_embed.weight.new_zeros(batch, 0, self.prompt_encoder.embed_dim)
        return torch.cat(tokens, dim=1)

    def forward(self, image: torch.Tensor, prompt: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        embedding, extra = self.encode(image)
        batch = image.shape[0]
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            batch, -1, *embedding.shape[-2:]
        )
        low_res = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=self.sparse_prompt(batch, prompt),
            dense_prompt_embeddings=dense,
            multimask_output=False,
            **extra,
        )[0]
        if low_res.shape[-2:] != image.shape[-2:]:
            low_res = F.interpolate(low_res, size=image.shape[-2:], mode="bilinear", align_corners=False)
        if prompt is not None:
            present = prompt["present"].reshape(-1, 1, 1, 1)
            low_res = torch.where(present, low_res, low_res.new_full((), ABSENT_LOGIT))
        return low_res
