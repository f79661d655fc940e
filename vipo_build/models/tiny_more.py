"""More tiny random-weight generators, one per registered family that tiny.py does not cover.

Same contract as tiny.py: the real pipeline classes and file layouts, built from configs on CPU
with local tokenizers, deterministic bytes, reused once complete (`.complete` marker). Sizes
keep the real VAE strides (8x for images, 8x/4x or 32x/8x for video) so 64 px images and
clips of a few frames go through the same code paths a production run does, just smaller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

# The tokenizers are tiny.py's: trained on its fixed corpus, so both modules build the same bytes.
from vipo_build.models.tiny import (
    TINY_MODELS,
    build_once,
    _chat_tokenizer,
    _clip_tokenizer,
    _t5_tokenizer,
    make_tiny_models,
)

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DiffusionPipeline, ModelMixin
    from transformers import CLIPTextModel, PreTrainedTokenizerBase, T5EncoderModel


BUILD_FORMAT = "vipo-tiny-more-v1"

# Keyword arguments a tiny model needs at call time that its production family does not.
TINY_CALL_OPTIONS: dict[str, dict[str, Any]] = {
    # Binning snaps sizes to the bin table of the transformer's sample size; tiny sample sizes
    # have no table (PixArt raises) or a 512 px one (Sana renders 512 px and resizes down).
    "sana": {"use_resolution_binning": False},
    "pixart-sigma": {"use_resolution_binning": False},
}


def _clip_text_model(tokenizer: PreTrainedTokenizerBase, projection: bool, positions: int = 77) -> CLIPTextModel:
    """A 2-layer CLIP text tower, 32 wide; with projection it also returns pooled text_embeds."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=positions,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5_encoder(tokenizer: PreTrainedTokenizerBase, d_model: int = 32) -> T5EncoderModel:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_kv=16,
            d_ff=2 * d_model,
            num_layers=2,
            num_heads=d_model // 16,
            relative_attention_num_buckets=8,
        )
    )


def _image_vae(latent_channels: int, scaling_factor: float, shift_factor: float | None) -> AutoencoderKL:
    """4 blocks, the real 8x downsampling of SD-style VAEs: 64 px images are 8x8 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    )


def _public_config(model: ModelMixin) -> dict[str, Any]:
    """A diffusers model's constructor arguments (its config without _class_name, _name_or_path...)."""
    return {k: v for k, v in model.config.items() if not k.startswith("_")}


def _base_components(pipeline: DiffusionPipeline) -> dict[str, Any]:
    """A loaded tiny pipeline's components, its diffusers models rebuilt from their public config:
    a loaded model's config names the directory it came from, which would end up in the bytes."""
    from diffusers import ModelMixin

    components = {}
    for name, component in pipeline.components.items():
        if isinstance(component, ModelMixin):
            copy = type(component).from_config(_public_config(component))
            copy.load_state_dict(component.state_dict())
            component = copy
        components[name] = component
    return components


def _build_flux_dev(path: Path) -> None:
    """tiny.py's Flux with a guidance-embedding transformer, as FLUX.1-dev is guidance-distilled."""
    from diffusers import FluxPipeline, FluxTransformer2DModel

    base = FluxPipeline.from_pretrained(make_tiny_models(path.parent, ["flux"])["flux"])
    torch.manual_seed(10)
    transformer = FluxTransformer2DModel(**{**_public_config(base.transformer), "guidance_embeds": True})
    FluxPipeline(**{**_base_components(base), "transformer": transformer}).save_pretrained(path)


def _build_flux2(path: Path) -> None:
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2Pipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    tokenizer = _chat_tokenizer()
    torch.manual_seed(11)
    hidden = 16
    # 31 layers so the pipeline's default text_encoder_out_layers (10, 20, 30) exist.
    text_encoder = Mistral3ForConditionalGeneration(
        Mistral3Config(
            text_config={
                "model_type": "mistral",
                "vocab_size": len(tokenizer),
                "hidden_size": hidden,
                "intermediate_size": 32,
                "num_hidden_layers": 31,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 8,
                "max_position_embeddings": 1024,
                "sliding_window": None,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={
                "model_type": "pixtral",
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 32,
                "patch_size": 8,
            },
            image_token_index=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # Real layout: 8x VAE with 2x2 patchified latents, so the transformer sees 4x the channels.
    vae = AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    transformer = Flux2Transformer2DModel(
        in_channels=4 * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * hidden,  # three stacked text-encoder layers
        axes_dims_rope=(4, 4, 4, 4),
    )
    Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
    ).save_pretrained(path)


def _build_qwen_image(path: Path) -> None:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = _chat_tokenizer()
    torch.manual_seed(12)
    hidden = 32
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tokenizer),
                "hidden_size": hidden,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "max_position_embeddings": 1024,
                "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3]},
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": hidden},
        )
    )
    # Qwen-Image's VAE is Wan's causal 3D VAE run on one frame: 8x spatial.
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    transformer = QwenImageTransformer2DModel(
        in_channels=4 * 4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=hidden,
        axes_dims_rope=(4, 6, 6),
    )
    QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=True),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    ).save_pretrained(path)


def _build_hidream(path: Path) -> None:
    """HiDream-I1 without text_encoder_4/tokenizer_4, like the hub repo: the Llama comes from
    elsewhere (registry load_pipeline). Its width matches tiny.py's "llm", the stand-in."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
    from transformers import AutoConfig

    llm_hidden = AutoConfig.from_pretrained(make_tiny_models(path.parent, ["llm"])["llm"]).hidden_size
    tokenizer, tokenizer_3 = _clip_tokenizer(), _t5_tokenizer()
    torch.manual_seed(13)
    # Long-CLIP towers (248 positions): HiDream feeds them up to 218 tokens.
    text_encoder = _clip_text_model(tokenizer, projection=True, positions=248)
    text_encoder_2 = _clip_text_model(tokenizer, projection=True, positions=248)
    text_encoder_3 = _t5_encoder(tokenizer_3)
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=[32, llm_hidden],  # T5 d_model, Llama hidden size
        text_emb_dim=64,  # both CLIP projections, concatenated
        num_routed_experts=2,
        num_activated_experts=1,
        axes_dims_rope=(4, 2, 2),  # no time axis: sums to 8 with the two spatial axes
        max_resolution=(32, 32),
        llama_layers=(0, 1),
    )
    HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_image_vae(4, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
        text_encoder_4=None,
        tokenizer_4=None,
        transformer=transformer,
    ).save_pretrained(path)


def _build_sd3(path: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    clip, t5 = _clip_tokenizer(), _t5_tokenizer()
    torch.manual_seed(14)
    text_encoder = _clip_text_model(clip, projection=True)
    text_encoder_2 = _clip_text_model(clip, projection=True)
    # T5 as wide as both CLIP hidden states side by side, as in SD3 (768 + 1280 padded to 4096).
    text_encoder_3 = _t5_encoder(t5, d_model=64)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=64,
        caption_projection_dim=32,
        pooled_projection_dim=64,  # both CLIP projections
        pos_embed_max_size=32,
    )
    StableDiffusion3Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_image_vae(4, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=text_encoder,
        tokenizer=clip,
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip,
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5,
        transformer=transformer,
    ).save_pretrained(path)


def _build_pixart_sigma(path: Path) -> None:
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = _t5_tokenizer()
    torch.manual_seed(15)
    text_encoder = _t5_encoder(tokenizer)
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=16,
        num_attention_heads=2,
        in_channels=4,
        out_channels=8,  # learned sigma: the pipeline keeps the first half
        cross_attention_dim=32,
        caption_channels=32,  # T5 d_model
    )
    PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_image_vae(4, scaling_factor=0.13025, shift_factor=None),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    ).save_pretrained(path)


def _build_sdxl(path: Path) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer = _clip_tokenizer()
    torch.manual_seed(16)
    text_encoder = _clip_text_model(tokenizer, projection=False)
    text_encoder_2 = _clip_text_model(tokenizer, projection=True)
    time_embed = 8
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=64,  # both CLIP hidden states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed,
        # Six size/crop numbers, each embedded, plus text_encoder_2's pooled projection.
        projection_class_embeddings_input_dim=6 * time_embed + 32,
    )
    StableDiffusionXLPipeline(
        vae=_image_vae(4, scaling_factor=0.13025, shift_factor=None),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1),
    ).save_pretrained(path)


def _build_wan22(path: Path) -> None:
    """tiny.py's Wan with a second (low-noise) expert, as Wan2.2-A14B switches at a boundary."""
    from diffusers import WanPipeline, WanTransformer3DModel

    base = WanPipeline.from_pretrained(make_tiny_models(path.parent, ["wan"])["wan"])
    torch.manual_seed(17)
    transformer_2 = WanTransformer3DModel(**_public_config(base.transformer))
    components = {**_base_components(base), "transformer_2": transformer_2}
    WanPipeline(**components, boundary_ratio=0.875).save_pretrained(path)


def _build_hunyuan_video(path: Path) -> None:
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import LlamaConfig, LlamaModel

    tokenizer, tokenizer_2 = _chat_tokenizer(), _clip_tokenizer()
    torch.manual_seed(18)
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,  # the pipeline reads the second-to-last layer
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    text_encoder_2 = _clip_text_model(tokenizer_2, projection=False)
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
    )
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        text_embed_dim=32,  # Llama hidden size
        pooled_projection_dim=32,  # CLIP hidden size
        rope_axes_dim=(4, 6, 6),
    )
    HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    ).save_pretrained(path)


def _build_cogvideox(path: Path) -> None:
    """CogVideoX-5b's layout: rotary positions (any size), DPM scheduler, v-prediction."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDPMScheduler,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )

    tokenizer = _t5_tokenizer()
    torch.manual_seed(19)
    text_encoder = _t5_encoder(tokenizer)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 16, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_height=64,
        sample_width=64,
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=32,
        text_embed_dim=32,  # T5 d_model
        num_layers=2,
        sample_width=8,  # latent size of a 64 px frame
        sample_height=8,
        sample_frames=9,
        use_rotary_positional_embeddings=True,
    )
    scheduler = CogVideoXDPMScheduler(
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        snr_shift_scale=1.0,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    CogVideoXPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    ).save_pretrained(path)


def _build_ltx_video(path: Path) -> None:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    tokenizer = _t5_tokenizer()
    torch.manual_seed(20)
    text_encoder = _t5_encoder(tokenizer)
    # The real strides: 4x4 patches, then three 2x stages (32x spatial), two of them also 2x in time (8x).
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
    )
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,  # T5 d_model
    )
    LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    ).save_pretrained(path)


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "flux-dev": _build_flux_dev,
    "flux2": _build_flux2,
    "qwen-image": _build_qwen_image,
    "hidream": _build_hidream,
    "sd3": _build_sd3,
    "pixart-sigma": _build_pixart_sigma,
    "sdxl": _build_sdxl,
    "wan22": _build_wan22,
    "hunyuan-video": _build_hunyuan_video,
    "cogvideox": _build_cogvideox,
    "ltx-video": _build_ltx_video,
}
MORE_TINY_MODELS: tuple[str, ...] = tuple(_BUILDERS)


def make_more_tiny_models(out_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Build (or reuse) tiny generators under out_dir/<name>, next to tiny.py's; return name -> path.

    Names may be any of MORE_TINY_MODELS or tiny.py's TINY_MODELS (those are built by tiny.py).
    """
    names = MORE_TINY_MODELS if names is None else tuple(names)
    unknown = sorted(set(names) - set(MORE_TINY_MODELS) - set(TINY_MODELS))
    if unknown:
        raise ValueError(f"unknown tiny models {unknown}; choose from {MORE_TINY_MODELS + TINY_MODELS}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = make_tiny_models(out_dir, [n for n in names if n in TINY_MODELS])
    return {n: base[n] if n in base else build_once(out_dir, n, _BUILDERS[n], BUILD_FORMAT) for n in names}
