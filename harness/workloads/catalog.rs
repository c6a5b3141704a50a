//! The workloads a manifest can name and the parameters each accepts. Kept free of tch so that
//! manifests can be validated (`claimbench check`) without touching libtorch.

use crate::plan::ParamValue;

/// The type a parameter accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// A string from a fixed set.
    Choice(&'static [&'static str]),
    /// A string that a check accepts (for open families such as `sliced:N` attention).
    Text(TextCheck),
    /// A parameter of a user's pipeline: a boolean, integer, finite float or string, passed
    /// through with the type it is written in.
    Free,
}

/// A named check of a text parameter: returns the hint to show when it rejects a value.
/// Compared by name, since function addresses are not meaningful to compare.
#[derive(Clone, Copy)]
pub struct TextCheck {
    pub name: &'static str,
    pub check: fn(&str) -> Result<(), String>,
}

impl PartialEq for TextCheck {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl std::fmt::Debug for TextCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextCheck({})", self.name)
    }
}

/// One parameter of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub default: DefaultValue,
    pub doc: &'static str,
}

/// `ParamValue` cannot be built in a `const`; this mirror can.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
}

impl DefaultValue {
    pub fn to_value(self) -> ParamValue {
        match self {
            DefaultValue::Int(i) => ParamValue::Int(i),
            DefaultValue::Float(x) => ParamValue::Float(x),
            DefaultValue::Bool(b) => ParamValue::Bool(b),
            DefaultValue::Str(s) => ParamValue::Str(s.to_string()),
        }
    }
}

/// A workload as manifests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    pub id: &'static str,
    pub summary: &'static str,
    /// Fault-injection workloads exist to test the harness itself.
    pub test_only: bool,
    pub params: &'static [ParamSpec],
    /// Parameters beyond `params` are accepted as [`ParamKind::Free`] (a user's pipeline
    /// defines its own).
    pub open_params: bool,
}

/// The spec of any parameter an open workload does not declare.
const FREE_PARAM: ParamSpec = ParamSpec {
    name: "",
    kind: ParamKind::Free,
    default: DefaultValue::Str(""),
    doc: "a parameter of the pipeline, passed to its `setup` as written",
};

impl WorkloadSpec {
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        let declared = self.params.iter().find(|p| p.name == name);
        declared.or(self.open_params.then_some(&FREE_PARAM))
    }

    /// Runs in the Python worker rather than the built-in one.
    pub fn is_python(&self) -> bool {
        self.id == PYTHON_WORKLOAD
    }
}

/// The workload that runs a Python pipeline (`params.entry`) in the Python worker.
pub const PYTHON_WORKLOAD: &str = "python";

/// `module:Attr` or `path/to/file.py:Attr`: where a Python pipeline class is found.
pub fn check_python_entry(text: &str) -> Result<(), String> {
    let hint = || {
        "an entry is `package.module:Class` (importable) or `path/to/file.py:Class` (relative to \
         the manifest's folder)"
            .to_string()
    };
    let (target, attr) = text.rsplit_once(':').ok_or_else(hint)?;
    let identifier = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c == '_' || c.is_alphanumeric())
    };
    let target_ok = if target.ends_with(".py") {
        target.len() > 3
    } else {
        !target.is_empty() && target.split('.').all(identifier)
    };
    if target_ok && identifier(attr) {
        Ok(())
    } else {
        Err(hint())
    }
}

const PYTHON_ENTRY: TextCheck = TextCheck {
    name: "python entry",
    check: check_python_entry,
};

const fn int(name: &'static str, default: i64, min: i64, max: i64, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Int { min, max },
        default: DefaultValue::Int(default),
        doc,
    }
}

const fn float(
    name: &'static str,
    default: f64,
    min: f64,
    max: f64,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Float { min, max },
        default: DefaultValue::Float(default),
        doc,
    }
}

const fn boolean(name: &'static str, default: bool, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Bool,
        default: DefaultValue::Bool(default),
        doc,
    }
}

const fn choice(
    name: &'static str,
    default: &'static str,
    options: &'static [&'static str],
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Choice(options),
        default: DefaultValue::Str(default),
        doc,
    }
}

const fn text(
    name: &'static str,
    default: &'static str,
    check: TextCheck,
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind: ParamKind::Text(check),
        default: DefaultValue::Str(default),
        doc,
    }
}

/// An attention implementation as `AttentionImpl::parse` spells it (a pure string check; it
/// touches no libtorch).
const ATTENTION: TextCheck = TextCheck {
    name: "attention",
    check: |text| match crate::models::AttentionImpl::parse(text) {
        Some(_) => Ok(()),
        None => Err(
            "valid values: `sdpa`, `math`, `sliced:auto`, `sliced:max`, `sliced:N` (N ≥ 1)".into(),
        ),
    },
};

const PRESETS: &[&str] = &["full", "tiny"];

const PRESET: ParamSpec = choice(
    "preset",
    "full",
    PRESETS,
    "model sizes: the real architectures, or `tiny` (same code, for CPU tests)",
);
const ATTENTION_PARAM: ParamSpec = text(
    "attention",
    "sdpa",
    ATTENTION,
    "attention kernel path: fused SDPA, explicit math, or diffusers' attention slicing",
);
const SEED: ParamSpec = int(
    "seed",
    0,
    0,
    i64::MAX,
    "seed of the random weights and inputs",
);
const VAE_SLICING: ParamSpec = boolean("vae_slicing", false, "decode one image at a time");
const VAE_TILING: ParamSpec = boolean("vae_tiling", false, "decode in overlapping tiles");
const SHAPE_STEPS: ParamSpec = int("shape_steps", 50, 1, 1000, "flow-matching DiT steps");
const SHAPE_GUIDANCE: ParamSpec = float(
    "shape_guidance",
    5.0,
    0.0,
    100.0,
    "guidance scale; CFG doubles the DiT batch unless 0",
);
const OCTREE: ParamSpec = int(
    "octree_resolution",
    384,
    16,
    1024,
    "volume decoding grid: (octree_resolution + 1)³ query points",
);
const NUM_CHUNKS: ParamSpec = int(
    "num_chunks",
    8000,
    64,
    1 << 24,
    "query points per volume-decoder chunk",
);
const LOAD: ParamSpec = choice(
    "load",
    "all_at_once",
    &["all_at_once", "lazy", "sequential"],
    "load every model first, on first use, or load/unload around each stage",
);
const OFFLOAD: ParamSpec = choice(
    "offload",
    "none",
    &["none", "model", "sequential"],
    "diffusers CPU offload: none (`pipe.to(\"cuda\")`), model, or sequential",
);

/// Every workload the worker can run.
pub const WORKLOADS: &[WorkloadSpec] = &[
    WorkloadSpec {
        id: PYTHON_WORKLOAD,
        summary: "a Python pipeline (yours, or an adapter for a note's library) run by the Python worker: `setup(params, ctx)` once, `call(ctx)` per sample",
        test_only: false,
        open_params: true,
        params: &[text(
            "entry",
            "",
            PYTHON_ENTRY,
            "the pipeline class: `package.module:Class` or `file.py:Class` (relative to the manifest); every other parameter goes to its `setup`",
        )],
    },
    WorkloadSpec {
        id: "conv_stack",
        summary:
            "conv → GroupNorm → SiLU blocks with a self-attention block: cuDNN- and dtype-sensitive",
        test_only: false,
        open_params: false,
        params: &[
            int("batch", 8, 1, 4096, "images per call"),
            int("in_channels", 4, 1, 4096, "input channels"),
            int(
                "channels",
                128,
                8,
                8192,
                "channels of every block (a multiple of groups)",
            ),
            int(
                "resolution",
                64,
                8,
                8192,
                "input height and width in pixels",
            ),
            int(
                "blocks",
                4,
                1,
                256,
                "number of conv → GroupNorm → SiLU blocks",
            ),
            int("groups", 32, 1, 1024, "GroupNorm groups"),
            boolean(
                "attention",
                true,
                "append a single-head self-attention block over the pixels",
            ),
            int(
                "seed",
                0,
                0,
                i64::MAX,
                "seed of the random weights and input",
            ),
        ],
    },
    WorkloadSpec {
        id: "matmul",
        summary: "one (m×k)·(k×n) matrix product: a reference op with exactly known memory",
        test_only: false,
        open_params: false,
        params: &[
            int("m", 4096, 1, 1 << 20, "rows of the left operand"),
            int("k", 4096, 1, 1 << 20, "inner dimension"),
            int("n", 4096, 1, 1 << 20, "columns of the right operand"),
            int("seed", 0, 0, i64::MAX, "seed of the random operands"),
        ],
    },
    WorkloadSpec {
        id: "hunyuan3d_shape",
        summary: "Hunyuan3D-2 shape: DINOv2-g conditioning, DiT flow steps with CFG, ShapeVAE decode, chunked volume decode, surface extraction",
        test_only: false,
        open_params: false,
        params: &[
            PRESET,
            SHAPE_STEPS,
            SHAPE_GUIDANCE,
            OCTREE,
            NUM_CHUNKS,
            int("image_size", 518, 28, 2048, "conditioning image size (DINOv2 input)"),
            LOAD,
            ATTENTION_PARAM,
            SEED,
        ],
    },
    WorkloadSpec {
        id: "hunyuan3d_texture",
        summary: "Hunyuan3D-2 texture: delight pipeline (text encoder, VAE, UNet), UV unwrap, normal/position renders, multiview pipeline (VAE encode, diffusion with a reference UNet, VAE decode), baking, inpainting (optionally after the shape stage)",
        test_only: false,
        open_params: false,
        params: &[
            PRESET,
            boolean("with_shape", false, "run the shape pipeline first, as the notes' end-to-end scenarios do"),
            SHAPE_STEPS,
            SHAPE_GUIDANCE,
            OCTREE,
            NUM_CHUNKS,
            choice("views", "standard", &["minimal", "fast", "standard"], "camera views: 3, 4 or 6"),
            int("delight_steps", 50, 1, 1000, "delight (InstructPix2Pix) UNet steps"),
            int("multiview_steps", 30, 1, 1000, "multiview diffusion steps"),
            float("multiview_guidance", 2.0, 0.0, 100.0, "CFG scale of the multiview UNet (≤ 1: no CFG)"),
            boolean("reference_unet", true, "run the reference (dual-stream) UNet every step"),
            int("render_size", 2048, 64, 8192, "rasterisation size of the normal/position renders and of baking"),
            int("texture_size", 2048, 64, 8192, "UV atlas size for baking and inpainting"),
            int("faces", 40000, 100, 10_000_000, "mesh faces for the UV-unwrap stand-in"),
            boolean("sequential_load", false, "load the delight and multiview pipelines from host memory just before their stages and unload them after (the shape models stay resident)"),
            boolean("diffusion_autocast", false, "fp16 autocast around the delight and multiview stages, as the notes wrap them (the weights are fp16 already at dtype = \"fp16\")"),
            boolean("diffusion_only", false, "run only the delight and multiview pipeline calls, each timed as one stage, on random normal/position maps at the 512-px view size: what the real-code adapter runs (no UV unwrap, rendering, baking or inpainting)"),
            VAE_SLICING,
            VAE_TILING,
            ATTENTION_PARAM,
            SEED,
        ],
    },
    WorkloadSpec {
        id: "sam3d",
        summary: "SAM 3D Objects: nine models in the real load order (four DINOv2 copies, mixed fp16/fp32 weights, the pipeline dtype as autocast), depth, two flow stages with interval CFG, mesh (FlexiCubes on dense grids) and Gaussian decoding",
        test_only: false,
        open_params: false,
        params: &[
            PRESET,
            LOAD,
            int("input_resolution", 770, 56, 2048, "side of the square input image: what MoGe reads and the crops come from (the preprocessors resize to 770 px and the DINO embedders to 770 / 1036 px whatever it is)"),
            int("ss_steps", 25, 1, 1000, "stage-1 (sparse structure) flow steps"),
            int("slat_steps", 25, 1, 1000, "stage-2 (structured latent) flow steps"),
            int("slat_tokens", 5000, 16, 1 << 16, "dense stand-in token count of the sparse stage-2 transformer (4 active voxels each, at most the 64³ grid)"),
            boolean("decode_gaussians", true, "run the Gaussian decoder (slat_decoder_gs; slat_decoder_gs_4 is loaded, never run)"),
            boolean("decode_mesh", true, "run the mesh decoder"),
            boolean("cleanup", true, "free every model and empty the cache after inference"),
            ATTENTION_PARAM,
            SEED,
        ],
    },
    WorkloadSpec {
        id: "t2i_dit",
        summary: "text-to-image with a Z-Image-style single-stream DiT: text encoder, DiT steps, VAE decode, diffusers offload modes",
        test_only: false,
        open_params: false,
        params: &[
            PRESET,
            int("height", 1024, 64, 4096, "image height in pixels"),
            int("width", 1024, 64, 4096, "image width in pixels"),
            int("steps", 9, 1, 1000, "DiT calls"),
            float("guidance", 0.0, 0.0, 100.0, "CFG scale; 0 or 1 means one DiT batch"),
            int("text_tokens", 512, 1, 4096, "text-encoder sequence length"),
            int("prompt_tokens", 27, 1, 4096, "unmasked prompt tokens, the caption length the DiT sees (at most text_tokens; the note's prompt has 27 with the chat template)"),
            OFFLOAD,
            VAE_SLICING,
            VAE_TILING,
            ATTENTION_PARAM,
            SEED,
        ],
    },
    WorkloadSpec {
        id: "up2you",
        summary: "UP2You: segmentation, DINOv2 features, multiview RGB and normal diffusion (text encoder, T2I-Adapter, a reference pass of the same UNet) with a guidance interval, VAE decode, reconstruction; each stage's models loaded before it and freed after it",
        test_only: false,
        open_params: false,
        params: &[
            PRESET,
            int("views", 6, 1, 64, "generated views"),
            int("resolution", 768, 64, 2048, "view resolution in pixels"),
            int("steps", 50, 1, 1000, "diffusion steps per stage"),
            float("guidance", 3.0, 0.0, 100.0, "CFG scale"),
            int("guidance_interval", 1, 1, 1000, "THG: the unconditional branch runs every k-th step (1 = plain CFG)"),
            int("reference_images", 4, 1, 64, "reference photos"),
            boolean("normal_stage", true, "run the normal-map diffusion stage"),
            boolean("rgb_stage_only", false, "run only the RGB multiview stage (reference pass, diffusion, decode) with its pipeline resident from set-up: what the real-code adapter runs"),
            int("reconstruction_iterations", 700, 0, 100_000, "mesh reconstruction stand-in iterations"),
            VAE_SLICING,
            ATTENTION_PARAM,
            SEED,
        ],
    },
    WorkloadSpec {
        id: "sleep",
        summary: "sleeps a fixed time per call: a deterministic workload for testing the gate",
        test_only: true,
        open_params: false,
        params: &[
            float("ms", 10.0, 0.0, 3_600_000.0, "milliseconds per call"),
            int(
                "stages",
                1,
                1,
                64,
                "the sleep is split evenly over this many stages",
            ),
        ],
    },
    WorkloadSpec {
        id: "fault",
        summary: "fault injection for testing the harness: abort, hang, exit, panic, or allocate",
        test_only: true,
        open_params: false,
        params: &[
            choice(
                "kind",
                "none",
                &["none", "abort", "hang", "exit", "panic", "alloc"],
                "what goes wrong",
            ),
            int(
                "after_calls",
                0,
                0,
                1 << 30,
                "measured calls that succeed before the fault",
            ),
            float(
                "alloc_gib",
                1.0,
                0.0,
                1048576.0,
                "size of the allocation for kind = \"alloc\"",
            ),
            int("exit_code", 3, 0, 255, "exit status for kind = \"exit\""),
        ],
    },
    WorkloadSpec {
        id: "unet",
        summary: "Stable Diffusion UNet (SD 2.1 geometry, random weights): `steps` calls per sample, \
                  optionally with multiview and reference attentions",
        test_only: false,
        open_params: false,
        params: &[
            choice("preset", "sd21", &["sd21", "tiny"], "network size: SD 2.1, or a toy size for CPU checks"),
            int(
                "in_channels",
                4,
                4,
                64,
                "conv_in channels: 4 latent + conditioning latents (8: InstructPix2Pix / delight, 12: Hunyuan3D-paint)",
            ),
            int("resolution", 512, 8, 8192, "image height and width in pixels (a multiple of 8; latent = /8)"),
            int("batch", 2, 1, 4096, "UNet batch (2 = one image with classifier-free guidance; views × CFG for multiview)"),
            int("steps", 1, 1, 10_000, "UNet calls per sample (denoising steps)"),
            text(
                "attention",
                "sdpa",
                ATTENTION,
                "attention implementation of every layer: sdpa | math | sliced:auto | sliced:max | sliced:N",
            ),
            int("views", 1, 1, 64, "views per object: consecutive batch entries that the multiview attention joins"),
            choice(
                "multiview",
                "none",
                &["none", "full", "row"],
                "extra multiview attention per transformer block: none, full sequence (Hunyuan3D-paint) or row-wise (UP2You)",
            ),
            choice(
                "reference",
                "none",
                &["none", "all", "selected"],
                "extra reference attention per transformer block: over all N_ref·HW recorded tokens (Hunyuan3D-paint) or reference_ratio·HW per view (UP2You)",
            ),
            float("reference_ratio", 2.0, 0.001, 64.0, "reference tokens per view as a multiple of HW (capped at reference_images), for reference = \"selected\""),
            int("reference_images", 1, 1, 64, "reference images per object"),
            choice(
                "reference_pass",
                "every_step",
                &["every_step", "once", "synthetic"],
                "how the reference tokens are made: a reference UNet pass every step (Hunyuan3D-paint) or once per sample (UP2You), or random stand-ins made at setup",
            ),
            boolean("camera_embedding", false, "add Hunyuan3D-paint's camera class embedding (49 × 1280)"),
            int("seed", 0, 0, i64::MAX, "seed of the random weights and inputs"),
        ],
    },
    WorkloadSpec {
        id: "vae_decode",
        summary: "AutoencoderKL decode (SD or 16-channel Flux-style VAE, random weights) with diffusers' slicing and tiling",
        test_only: false,
        open_params: false,
        params: &[
            choice("preset", "sd", &["sd", "flux16", "tiny"], "VAE: SD 2.x, 16-channel Flux-style, or a toy size for CPU checks"),
            int("resolution", 512, 8, 16384, "output height and width in pixels (a multiple of 8)"),
            int("batch", 1, 1, 4096, "images decoded per call"),
            boolean("slicing", false, "decode one image at a time (diffusers' enable_slicing)"),
            boolean("tiling", false, "decode in overlapping, blended tiles (diffusers' enable_tiling)"),
            int("tile_size", 0, 0, 16384, "tile size in pixels; 0 = the VAE's sample_size (768 for SD 2.1, 1024 for Flux)"),
            int("seed", 0, 0, i64::MAX, "seed of the random weights and latents"),
        ],
    },
];

/// Looks a workload up by id.
pub fn workload(id: &str) -> Option<&'static WorkloadSpec> {
    WORKLOADS.iter().find(|w| w.id == id)
}
