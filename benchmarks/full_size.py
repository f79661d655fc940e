"""Full-size architectures with random weights, for GPU figures without a model hub: built from
their published configs on the device (diffusers and transformers classes), or, for a vLLM engine
(`load_format="dummy"`), a local folder with the config, tokenizer and processor and no weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FluxPipeline

from vipo_build.models.tiny import _CHAT_TEMPLATE, _IMAGE_TOKEN, _chat_tokenizer, _clip_tokenizer, _t5_tokenizer


def full_size_flux(device: str) -> FluxPipeline:
    """FLUX.1-dev's architecture (its transformer, VAE, scheduler and text-encoder configs) with
    random bf16 weights, initialised on `device`."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer, t5_tokenizer = _clip_tokenizer(), _t5_tokenizer()
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(
                patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                guidance_embeds=True, axes_dims_rope=(16, 56, 56),
            )
            vae = AutoencoderKL(
                in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                layers_per_block=2, act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024,
                scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
                force_upcast=True, mid_block_add_attention=True,
            )
            text_encoder = CLIPTextModel(CLIPTextConfig(
                vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
                bos_token_id=clip_tokenizer.bos_token_id, eos_token_id=clip_tokenizer.eos_token_id,
                pad_token_id=clip_tokenizer.pad_token_id,
            ))
            text_encoder_2 = T5EncoderModel(T5Config(
                vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, tie_word_embeddings=False,
            ))
    finally:
        torch.set_default_dtype(default_dtype)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    pipeline = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer,
                            text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer, transformer=transformer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def full_size_wan_1_3b(device: str):
    """Wan2.1 T2V 1.3B's architecture (its transformer, VAE and UMT5-XXL text encoder) with random
    bf16 weights on `device`; a tiny tokenizer (the encoder sees the same 512-token sequence)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            transformer = WanTransformer3DModel(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                                                num_layers=30, text_dim=4096, freq_dim=256)
            text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240,
                                                       num_layers=24, num_heads=64, feed_forward_proj="gated-gelu"))
            vae = AutoencoderKLWan().to(torch.float32)  # Wan keeps its VAE in float32
    finally:
        torch.set_default_dtype(default_dtype)
    pipeline = WanPipeline(tokenizer=_t5_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def llava_7b_folder(path: Path) -> Path:
    """LLaVA-1.5-7B's architecture (CLIP ViT-L/14 at 336 px, Llama 7B) as a config, tokenizer and
    processor without weights: what vLLM needs with load_format="dummy"."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor

    tokenizer = _chat_tokenizer(_IMAGE_TOKEN)
    image_size, patch_size = 336, 14
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=image_size, patch_size=patch_size,
                                       projection_dim=768),
        text_config=LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids(_IMAGE_TOKEN),
        image_seq_length=(image_size // patch_size) ** 2,
        torch_dtype="bfloat16",
    )
    path.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(path)
    LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                           crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer, patch_size=patch_size, num_additional_image_tokens=1,
        vision_feature_select_strategy=config.vision_feature_select_strategy, chat_template=_CHAT_TEMPLATE,
    ).save_pretrained(path)
    return path
