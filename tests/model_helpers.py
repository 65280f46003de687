"""Tiny randomly initialised models of the real architectures, written into a temporary store.

Everything here is saved the way the real checkpoints are published (a SAM ``.pth`` state dict,
a diffusers folder with fp16-variant safetensors) and loaded back by the product's own loaders.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from vfx.models import ModelStore, load_manifest, sha256_file

TINY_SAM = {"image_size": 256, "patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2,
            "global_attn_indexes": [1], "window_size": 4, "prompt_embed_dim": 32, "decoder_mlp_dim": 64}


def manifest_entry(kind: str, folder: Path, files: list[str], commercial: bool = True, **extra) -> dict:
    return {"kind": kind, "licence": "Apache-2.0" if commercial else "test non-commercial", "commercial_use": commercial,
            "source": "tests/model_helpers.py",
            "files": [{"path": f, "sha256": sha256_file(folder / f), "size": (folder / f).stat().st_size} for f in files],
            **extra}


def write_store(root: Path, entries: dict[str, dict], monkeypatch=None) -> ModelStore:
    """Write the manifest beside the store and point VFX_MODEL_DIR / VFX_MODEL_MANIFEST at them."""
    manifest = root.parent / f"{root.name}-models.yaml"
    manifest.write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    if monkeypatch is not None:
        monkeypatch.setenv("VFX_MODEL_DIR", str(root))
        monkeypatch.setenv("VFX_MODEL_MANIFEST", str(manifest))
    return ModelStore(root, load_manifest(manifest))


def tiny_sam(root: Path, name: str = "sam_tiny", seed: int = 0) -> dict:
    """A SAM with a 2-block ViT saved as ``<root>/<name>/sam_tiny.pth``; returns its manifest entry."""
    from vfx.segment.sam import build_sam

    torch.manual_seed(seed)
    sam = build_sam(TINY_SAM)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), folder / "sam_tiny.pth")
    return manifest_entry("sam", folder, ["sam_tiny.pth"], architecture=TINY_SAM)


def _tiny_tokenizer(folder: Path):
    """A CLIP BPE tokenizer with a tiny vocabulary (bytes, a few merges, the special tokens)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in letters + ".,!'-0123456789":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    merges = ["#version: 0.2", "t h", "th e</w>", "a n", "o n", "e r", "i n"]
    for merge in merges[1:]:
        merged = merge.replace(" ", "")
        vocab.setdefault(merged, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_diffusion(root: Path, name: str, inpaint: bool = False, seed: int = 0, commercial: bool = True,
                   guidance_scale: float = 0.0) -> dict:
    """SD-architecture pipeline (UNet2DConditionModel, AutoencoderKL, CLIPTextModel + tokenizer, Euler)
    with tiny configs, saved as a diffusers folder with fp16-variant weights like sd-turbo."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=9 if inpaint else 4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,  # 8x, like SD
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16), latent_channels=4,
                        norm_num_groups=8, sample_size=32)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=128, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0,
                                        eos_token_id=1, pad_token_id=1, projection_dim=32))
    folder = root / name
    tokenizer = _tiny_tokenizer(folder / "_tok")
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing", num_train_timesteps=1000, steps_offset=1)
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, variant="fp16", safe_serialization=True)
    for f in (folder / "_tok").iterdir():
        f.unlink()
    (folder / "_tok").rmdir()
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return manifest_entry("diffusion", folder, files, commercial=commercial, variant="fp16",
                          architecture={"family": "sd1", "mode": "inpaint" if inpaint else "img2img"},
                          defaults={"guidance_scale": guidance_scale})


def tiny_controlnet(root: Path, unet_folder: Path, name: str = "controlnet_tiny", seed: int = 0) -> dict:
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(unet_folder / "unet", variant="fp16")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8, 16))
    with torch.no_grad():  # a trained ControlNet's zero-convolutions are no longer zero
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            module.weight.normal_(0, 0.05)
    folder = root / name
    controlnet.save_pretrained(folder, safe_serialization=True)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return manifest_entry("controlnet", folder, files, architecture={"family": "sd1", "condition": "canny"})


TINY_SAM2_SIDE = 128  # the model's square input; frames are resized to it


def tiny_sam2_config():
    """A Sam2VideoConfig small enough for the CPU. transformers hard-codes a 64-channel memory,
    wants the other hidden sizes to be multiples of 64 above 64, and a Hiera global-attention
    block must not open a stage (block 3 is the second of stage 3)."""
    from transformers import Sam2VideoConfig

    side, hidden = TINY_SAM2_SIDE, 128
    grids = [[side // s, side // s] for s in (4, 8, 16)]
    return Sam2VideoConfig(
        vision_config={"model_type": "sam2_vision_model", "backbone_channel_list": [128, 64, 32, 16],
                       "backbone_feature_sizes": grids, "fpn_hidden_size": hidden,
                       "backbone_config": {"model_type": "sam2_hiera_det_model", "hidden_size": 16, "num_attention_heads": 1,
                                           "image_size": [side, side], "blocks_per_stage": [1, 1, 2, 1],
                                           "embed_dim_per_stage": [16, 32, 64, 128], "num_attention_heads_per_stage": [1, 1, 2, 2],
                                           "window_size_per_stage": [4, 4, 4, 4], "global_attention_blocks": [3],
                                           "window_positional_embedding_background_size": [4, 4]}},
        prompt_encoder_config={"hidden_size": hidden, "image_size": side, "patch_size": 16},
        mask_decoder_config={"hidden_size": hidden, "mlp_dim": 256, "num_attention_heads": 4, "iou_head_hidden_dim": 64},
        image_size=side, num_maskmem=3, max_object_pointers_in_encoder=4,
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=256,
        memory_attention_rope_feat_sizes=grids[-1], memory_encoder_hidden_size=hidden, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=256)


def tiny_sam2(root: Path, name: str = "sam2_tiny", seed: int = 0) -> tuple[dict, Path]:
    """A randomly initialised Sam2VideoModel + Sam2VideoProcessor saved as a transformers folder in
    ``<root>-<name>-published``, like facebook/sam2.1-hiera-*; returns its manifest entry (no pinned
    hashes, like the real ones: import the folder and the store records them) and the folder."""
    from transformers import Sam2ImageProcessorFast, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    torch.manual_seed(seed)
    model = Sam2VideoModel(tiny_sam2_config()).eval()
    with torch.no_grad():  # a random object-score head says "absent" about half the time; a trained one sees the subject
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(8.0)
    side = {"height": TINY_SAM2_SIDE, "width": TINY_SAM2_SIDE}
    processor = Sam2VideoProcessor(Sam2ImageProcessorFast(size=side), Sam2VideoVideoProcessor(size=side),
                                   target_size=TINY_SAM2_SIDE)
    folder = root.parent / f"{root.name}-{name}-published"
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    entry = manifest_entry("sam2", folder, files, architecture={"family": "sam2.1", "backbone": "tiny test", "image_size": 128})
    for file in entry["files"]:
        file["sha256"] = None
    return entry, folder
