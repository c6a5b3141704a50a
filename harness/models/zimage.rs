//! Z-Image(-Turbo) text-to-image: the single-stream DiT (`ZImageTransformer2DModel` defaults)
//! and a Qwen3-4B-class text encoder of the right size.
//!
//! DiT: a 16-channel latent is patchified 2×2 (64 values per token) and embedded to 3840;
//! caption features (2560, the text encoder's width) go through RMSNorm + Linear to 3840. Both
//! token sets are padded to a multiple of 32 with learned pad tokens. Two noise-refiner blocks
//! (modulated) run on the image tokens, two context-refiner blocks (unmodulated) on the caption
//! tokens, then 30 modulated blocks on `[image, caption]` and a final adaLN layer; the image
//! part is unpatchified. Blocks: sandwich RMSNorms (eps 1e-5) around attention (30 heads × 128,
//! no biases, QK RMSNorm, 3-axis RoPE with axes (32, 48, 48) and θ 256) and a SwiGLU FFN
//! (hidden `int(dim/3·8)` = 10240). Modulation: `Linear(256 → 4·dim)` on the timestep
//! embedding (`1000·t` → sinusoid 256 → MLP 256 → 1024 → 256), giving (scale, gate) for
//! attention and FFN, gates through tanh. Exact count: 6,154,908,736 (notes: 6.155 B).
//!
//! Position ids as the reference builds them: caption token `i` at `(1 + i, 0, 0)`; image
//! token `(h, w)` at `(padded caption length + 1, h, w)`; pad tokens at 0.
//!
//! Text encoder: Qwen3 decoder layers (hidden 2560, 36 layers, 32 query / 8 key-value heads of
//! 128, QK RMSNorm, RoPE θ 1e6, SwiGLU 9728, vocab 151,936, tied embeddings, so no separate
//! LM head): ~4.02 B. The pipeline runs it once on the padded 512-token prompt and takes
//! `hidden_states[-2]` (the input of the last layer; the last layer still runs). Attention is
//! causal; the padding mask is left out (same work, batch 1).

use super::attention::{attention, masked_attention, AttentionImpl, Mask, QkNorm, QkNormKind};
use super::embeddings::timestep_embedding;
use super::feed_forward::{Activation, FeedForward};
use super::layers::{Embedding, LayerNorm, Linear, RmsNorm};
use super::vit::{apply_qk_norm, merge_heads, qk_norm};
use super::weights::{Builder, Init, Param, Weights};
use tch::{Device, Kind, Tensor};

/// How RoPE pairs the channels of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopePairs {
    /// Adjacent channels `(2i, 2i+1)` form a complex number (Z-Image, Flux).
    Interleaved,
    /// Channel `i` pairs with `i + d/2` (`rotate_half`, Llama/Qwen).
    Half,
}

/// RoPE angles for `positions` (`[n, axes]`): per axis `a` of width `d_a`, frequencies
/// `θ^(-2j/d_a)`; returns `(cos, sin)`, each `[n, Σ d_a / 2]` in fp32.
pub fn rope_angles(positions: &Tensor, axes_dims: &[i64], theta: f64) -> (Tensor, Tensor) {
    let device = positions.device();
    let pos = positions.to_kind(Kind::Float);
    let parts: Vec<Tensor> = axes_dims
        .iter()
        .enumerate()
        .map(|(a, &d)| {
            pos.select(1, a as i64).unsqueeze(1)
                * inverse_frequencies(d, theta, device).unsqueeze(0)
        })
        .collect();
    let angles = Tensor::cat(&parts, 1);
    (angles.cos(), angles.sin())
}

/// `theta^(-2i/d)` for `i < d/2`: the rotary frequencies of a `d`-channel axis.
fn inverse_frequencies(d: i64, theta: f64, device: Device) -> Tensor {
    let exponent = Tensor::arange_start_step(0, d, 2, (Kind::Float, device)) / d as f64;
    (exponent * -(theta.ln())).exp()
}

/// [`rope_angles`] of positions `0..n` on one axis, computed as transformers' rotary
/// embedding computes them, after the token embedding and as a matmul of the inverse
/// frequencies and the positions. On a GPU the order matters for reserved memory: the
/// process's first cuBLAS call allocates cuBLAS's workspace (32 MiB, kept for the process's
/// life) through the caching allocator, and in the real text encoder that call is this one,
/// so the workspace lands in the block the embedding weight has just freed (a 742 MiB block
/// under sequential offload, which it then keeps reserved).
pub fn rotary_angles_by_matmul(
    n: i64,
    head_dim: i64,
    theta: f64,
    device: Device,
) -> (Tensor, Tensor) {
    let inv_freq = inverse_frequencies(head_dim, theta, device).unsqueeze(1);
    let positions = Tensor::arange(n, (Kind::Float, device)).unsqueeze(0);
    let angles = inv_freq.matmul(&positions).transpose(0, 1);
    (angles.cos(), angles.sin())
}

/// Rotates `x` (`[batch, heads, tokens, head_dim]`) by the angles of [`rope_angles`], in fp32.
pub fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor, pairs: RopePairs) -> Tensor {
    let kind = x.kind();
    let xf = x.to_kind(Kind::Float);
    let d = *x.size().last().expect("head_dim");
    match pairs {
        RopePairs::Interleaved => {
            let mut shape = x.size();
            shape.pop();
            let pairs_shape: Vec<i64> = shape.iter().copied().chain([d / 2, 2]).collect();
            let xp = xf.reshape(pairs_shape.as_slice());
            let (re, im) = (xp.select(-1, 0), xp.select(-1, 1));
            let out_re = &re * cos - &im * sin;
            let out_im = &re * sin + &im * cos;
            Tensor::stack(&[out_re, out_im], -1)
                .reshape(x.size().as_slice())
                .to_kind(kind)
        }
        RopePairs::Half => {
            let (x1, x2) = (xf.narrow(-1, 0, d / 2), xf.narrow(-1, d / 2, d / 2));
            Tensor::cat(&[&x1 * cos - &x2 * sin, &x2 * cos + &x1 * sin], -1).to_kind(kind)
        }
    }
}

/// Shape of the Z-Image DiT.
#[derive(Debug, Clone, PartialEq)]
pub struct ZImageConfig {
    pub in_channels: i64,
    pub patch_size: i64,
    pub dim: i64,
    pub layers: i64,
    /// Noise-refiner and context-refiner blocks (each).
    pub refiner_layers: i64,
    pub heads: i64,
    pub norm_eps: f64,
    pub cap_feat_dim: i64,
    /// Width of the timestep embedding the blocks are modulated from: `min(dim, 256)`.
    pub adaln_dim: i64,
    /// Hidden width of the timestep MLP.
    pub t_mid: i64,
    pub t_scale: f64,
    pub rope_theta: f64,
    pub axes_dims: Vec<i64>,
    /// Image and caption tokens are each padded to a multiple of this.
    pub seq_multiple: i64,
}

impl ZImageConfig {
    /// Z-Image-Turbo (`ZImageTransformer2DModel` defaults).
    pub fn turbo() -> ZImageConfig {
        ZImageConfig {
            in_channels: 16,
            patch_size: 2,
            dim: 3840,
            layers: 30,
            refiner_layers: 2,
            heads: 30,
            norm_eps: 1e-5,
            cap_feat_dim: 2560,
            adaln_dim: 256,
            t_mid: 1024,
            t_scale: 1000.0,
            rope_theta: 256.0,
            axes_dims: vec![32, 48, 48],
            seq_multiple: 32,
        }
    }

    pub fn tiny() -> ZImageConfig {
        ZImageConfig {
            in_channels: 4,
            dim: 32,
            layers: 2,
            refiner_layers: 1,
            heads: 4,
            cap_feat_dim: 12,
            adaln_dim: 32,
            t_mid: 16,
            axes_dims: vec![2, 2, 4],
            seq_multiple: 8,
            ..ZImageConfig::turbo()
        }
    }

    pub fn head_dim(&self) -> i64 {
        self.dim / self.heads
    }

    /// SwiGLU hidden width: `int(dim / 3 · 8)`.
    pub fn ffn_hidden(&self) -> i64 {
        (self.dim as f64 / 3.0 * 8.0) as i64
    }

    /// Values per patch token.
    pub fn patch_dim(&self) -> i64 {
        self.patch_size * self.patch_size * self.in_channels
    }
}

/// One Z-Image transformer block; `ada_ln` is absent in the context refiner.
#[derive(Debug, Clone)]
pub struct ZImageBlock {
    pub heads: i64,
    pub head_dim: i64,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub qk_norm: QkNorm,
    pub feed_forward: FeedForward,
    pub attention_norm1: RmsNorm,
    pub ffn_norm1: RmsNorm,
    pub attention_norm2: RmsNorm,
    pub ffn_norm2: RmsNorm,
    pub ada_ln: Option<Linear>,
}

impl ZImageBlock {
    pub fn new(b: &mut Builder, name: &str, c: &ZImageConfig, modulated: bool) -> ZImageBlock {
        let b = &mut b.scope(name);
        let dim = c.dim;
        let lin =
            |b: &mut Builder, n: &str| Linear::new(b, &format!("attention.{n}"), dim, dim, false);
        let rms = |b: &mut Builder, n: &str| RmsNorm::new(b, n, dim, c.norm_eps);
        ZImageBlock {
            heads: c.heads,
            head_dim: c.head_dim(),
            to_q: lin(b, "to_q"),
            to_k: lin(b, "to_k"),
            to_v: lin(b, "to_v"),
            to_out: lin(b, "to_out"),
            qk_norm: qk_norm(b, "attention", QkNormKind::Rms, c.head_dim(), c.norm_eps)
                .expect("RMS QK-norm"),
            feed_forward: FeedForward::new(
                b,
                "feed_forward",
                dim,
                c.ffn_hidden(),
                Activation::Swiglu,
                false,
            ),
            attention_norm1: rms(b, "attention_norm1"),
            ffn_norm1: rms(b, "ffn_norm1"),
            attention_norm2: rms(b, "attention_norm2"),
            ffn_norm2: rms(b, "ffn_norm2"),
            ada_ln: modulated
                .then(|| Linear::new(b, "adaLN_modulation", c.adaln_dim, 4 * dim, true)),
        }
    }

    fn attention(
        &self,
        w: &Weights,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        imp: AttentionImpl,
    ) -> Tensor {
        let (b, n, _) = x.size3().expect("[batch, tokens, dim]");
        let split = |t: Tensor| t.view([b, n, self.heads, self.head_dim]).transpose(1, 2);
        let q = split(self.to_q.forward(w, x));
        let k = split(self.to_k.forward(w, x));
        let v = split(self.to_v.forward(w, x));
        let (q, k) = apply_qk_norm(Some(&self.qk_norm), w, q, k);
        let q = apply_rope(&q, &rope.0, &rope.1, RopePairs::Interleaved);
        let k = apply_rope(&k, &rope.0, &rope.1, RopePairs::Interleaved);
        self.to_out
            .forward(w, &merge_heads(&attention(&q, &k, &v, imp, false)))
    }

    /// `x` `[b, n, dim]`; `adaln` `[b, adaln_dim]` for modulated blocks.
    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        adaln: Option<&Tensor>,
        imp: AttentionImpl,
    ) -> Tensor {
        match (&self.ada_ln, adaln) {
            (Some(lin), Some(c)) => {
                let m = lin.forward(w, c).unsqueeze(1).chunk(4, -1);
                let (scale_msa, gate_msa) = (&m[0] + 1.0, m[1].tanh());
                let (scale_mlp, gate_mlp) = (&m[2] + 1.0, m[3].tanh());
                let h = self.attention(
                    w,
                    &(self.attention_norm1.forward(w, x) * scale_msa),
                    rope,
                    imp,
                );
                let x = x + gate_msa * self.attention_norm2.forward(w, &h);
                let h = self
                    .feed_forward
                    .forward(w, &(self.ffn_norm1.forward(w, &x) * scale_mlp));
                &x + gate_mlp * self.ffn_norm2.forward(w, &h)
            }
            (None, _) => {
                let h = self.attention(w, &self.attention_norm1.forward(w, x), rope, imp);
                let x = x + self.attention_norm2.forward(w, &h);
                let h = self.feed_forward.forward(w, &self.ffn_norm1.forward(w, &x));
                &x + self.ffn_norm2.forward(w, &h)
            }
            (Some(_), None) => panic!("a modulated block needs the timestep embedding"),
        }
    }
}

/// The Z-Image single-stream DiT.
#[derive(Debug, Clone)]
pub struct ZImageTransformer {
    pub config: ZImageConfig,
    pub x_embedder: Linear,
    pub t_in: Linear,
    pub t_out: Linear,
    pub cap_norm: RmsNorm,
    pub cap_proj: Linear,
    pub x_pad_token: Param,
    pub cap_pad_token: Param,
    pub noise_refiner: Vec<ZImageBlock>,
    pub context_refiner: Vec<ZImageBlock>,
    pub layers: Vec<ZImageBlock>,
    pub final_norm: LayerNorm,
    pub final_linear: Linear,
    pub final_ada_ln: Linear,
}

/// Width of the sinusoidal timestep embedding.
pub const FREQUENCY_EMBED_DIM: i64 = 256;

impl ZImageTransformer {
    pub fn new(b: &mut Builder, name: &str, config: ZImageConfig) -> ZImageTransformer {
        let b = &mut b.scope(name);
        let c = &config;
        let blocks = |b: &mut Builder, part: &str, n: i64, modulated: bool| -> Vec<ZImageBlock> {
            (0..n)
                .map(|i| ZImageBlock::new(b, &format!("{part}.{i}"), c, modulated))
                .collect()
        };
        let noise_refiner = blocks(b, "noise_refiner", c.refiner_layers, true);
        let context_refiner = blocks(b, "context_refiner", c.refiner_layers, false);
        let layers = blocks(b, "layers", c.layers, true);
        ZImageTransformer {
            x_embedder: Linear::new(b, "x_embedder", c.patch_dim(), c.dim, true),
            t_in: Linear::new(b, "t_embedder.mlp.0", FREQUENCY_EMBED_DIM, c.t_mid, true),
            t_out: Linear::new(b, "t_embedder.mlp.2", c.t_mid, c.adaln_dim, true),
            cap_norm: RmsNorm::new(b, "cap_embedder.0", c.cap_feat_dim, c.norm_eps),
            cap_proj: Linear::new(b, "cap_embedder.1", c.cap_feat_dim, c.dim, true),
            x_pad_token: b.param("x_pad_token", &[1, c.dim], Init::Normal(0.02)),
            cap_pad_token: b.param("cap_pad_token", &[1, c.dim], Init::Normal(0.02)),
            noise_refiner,
            context_refiner,
            layers,
            final_norm: LayerNorm::new(b, "final_layer.norm_final", c.dim, 1e-6, false),
            final_linear: Linear::new(b, "final_layer.linear", c.dim, c.patch_dim(), true),
            final_ada_ln: Linear::new(b, "final_layer.adaLN_modulation", c.adaln_dim, c.dim, true),
            config,
        }
    }

    fn padded(&self, n: i64) -> i64 {
        let m = self.config.seq_multiple;
        (n + m - 1) / m * m
    }

    /// Appends `padded(n) − n` copies of `pad` (`[1, dim]`) to `x` (`[b, n, dim]`).
    fn pad_tokens(&self, w: &Weights, x: Tensor, pad: Param) -> Tensor {
        let (b, n, dim) = x.size3().expect("[batch, tokens, dim]");
        let extra = self.padded(n) - n;
        if extra == 0 {
            return x;
        }
        let pad = w.get(pad).unsqueeze(0).expand([b, extra, dim], false);
        Tensor::cat(&[x, pad], 1)
    }

    /// `[b, C, H, W]` → `[b, (H/p)·(W/p), p·p·C]` (patch rows, then columns, then channels).
    pub fn patchify(&self, x: &Tensor) -> Tensor {
        let p = self.config.patch_size;
        let (b, c, h, w) = x.size4().expect("[batch, channels, height, width]");
        x.view([b, c, h / p, p, w / p, p])
            .permute([0, 2, 4, 3, 5, 1])
            .reshape([b, (h / p) * (w / p), p * p * c])
    }

    /// Inverse of [`Self::patchify`].
    pub fn unpatchify(&self, x: &Tensor, h: i64, w: i64) -> Tensor {
        let p = self.config.patch_size;
        let c = self.config.in_channels;
        let b = x.size()[0];
        x.view([b, h / p, w / p, p, p, c])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([b, c, h, w])
    }

    /// Position ids `[n, 3]` (see the module docs).
    fn positions(&self, cap_len: i64, rows: i64, cols: i64, device: Device) -> (Tensor, Tensor) {
        let opts = (Kind::Float, device);
        let cap_pad = self.padded(cap_len);
        let cap = Tensor::zeros([cap_pad, 3], opts);
        cap.narrow(0, 0, cap_len)
            .select(1, 0)
            .copy_(&(Tensor::arange(cap_len, opts) + 1.0));
        let n_img = rows * cols;
        let img = Tensor::zeros([self.padded(n_img), 3], opts);
        let grid = Tensor::stack(
            &[
                Tensor::full([rows, cols], (cap_pad + 1) as f64, opts),
                Tensor::arange(rows, opts)
                    .unsqueeze(1)
                    .expand([rows, cols], false),
                Tensor::arange(cols, opts)
                    .unsqueeze(0)
                    .expand([rows, cols], false),
            ],
            -1,
        )
        .reshape([n_img, 3]);
        img.narrow(0, 0, n_img).copy_(&grid);
        (img, cap)
    }

    /// One model call: `latent` `[b, C, H, W]`, `t` `[b]` in [0, 1], `caption` `[b, L,
    /// cap_feat_dim]` → `[b, C, H, W]`.
    pub fn forward(
        &self,
        w: &Weights,
        latent: &Tensor,
        t: &Tensor,
        caption: &Tensor,
        imp: AttentionImpl,
    ) -> Tensor {
        let c = &self.config;
        let (_, _, h, wd) = latent.size4().expect("[batch, channels, height, width]");
        let (rows, cols) = (h / c.patch_size, wd / c.patch_size);
        let n_img = rows * cols;
        let cap_len = caption.size()[1];

        let t_freq = timestep_embedding(
            &(t * c.t_scale),
            FREQUENCY_EMBED_DIM,
            true,
            0.0,
            1.0,
            10000.0,
        )
        .to_kind(w.kind());
        let adaln = self.t_out.forward(w, &self.t_in.forward(w, &t_freq).silu());

        let (img_pos, cap_pos) = self.positions(cap_len, rows, cols, latent.device());
        let img_rope = rope_angles(&img_pos, &c.axes_dims, c.rope_theta);
        let cap_rope = rope_angles(&cap_pos, &c.axes_dims, c.rope_theta);

        let mut x = self.pad_tokens(
            w,
            self.x_embedder.forward(w, &self.patchify(latent)),
            self.x_pad_token,
        );
        for block in &self.noise_refiner {
            x = block.forward(w, &x, &img_rope, Some(&adaln), imp);
        }
        let cap = self.cap_proj.forward(w, &self.cap_norm.forward(w, caption));
        let mut cap = self.pad_tokens(w, cap, self.cap_pad_token);
        for block in &self.context_refiner {
            cap = block.forward(w, &cap, &cap_rope, None, imp);
        }

        let rope = (
            Tensor::cat(&[&img_rope.0, &cap_rope.0], 0),
            Tensor::cat(&[&img_rope.1, &cap_rope.1], 0),
        );
        let mut u = Tensor::cat(&[x, cap], 1);
        for block in &self.layers {
            u = block.forward(w, &u, &rope, Some(&adaln), imp);
        }
        let scale = self.final_ada_ln.forward(w, &adaln.silu()).unsqueeze(1) + 1.0;
        let out = self.final_linear.forward(
            w,
            &(self.final_norm.forward(w, &u.narrow(1, 0, n_img)) * scale),
        );
        self.unpatchify(&out, h, wd)
    }
}

/// Shape of the Qwen3-class text encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextEncoderConfig {
    pub vocab: i64,
    pub hidden: i64,
    pub layers: i64,
    pub heads: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
    pub ffn_hidden: i64,
    pub eps: f64,
    pub rope_theta: f64,
    /// Prompt length the pipeline pads to (`max_sequence_length`).
    pub max_tokens: i64,
}

impl TextEncoderConfig {
    /// Qwen3-4B.
    pub fn qwen3_4b() -> TextEncoderConfig {
        TextEncoderConfig {
            vocab: 151_936,
            hidden: 2560,
            layers: 36,
            heads: 32,
            kv_heads: 8,
            head_dim: 128,
            ffn_hidden: 9728,
            eps: 1e-6,
            rope_theta: 1_000_000.0,
            max_tokens: 512,
        }
    }

    pub fn tiny() -> TextEncoderConfig {
        TextEncoderConfig {
            vocab: 50,
            hidden: 16,
            layers: 3,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
            ffn_hidden: 24,
            max_tokens: 12,
            ..TextEncoderConfig::qwen3_4b()
        }
    }
}

/// One Qwen3 decoder layer.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub heads: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
    pub input_layernorm: RmsNorm,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub qk_norm: QkNorm,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: FeedForward,
}

impl DecoderLayer {
    pub fn new(b: &mut Builder, name: &str, c: &TextEncoderConfig) -> DecoderLayer {
        let b = &mut b.scope(name);
        DecoderLayer {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            input_layernorm: RmsNorm::new(b, "input_layernorm", c.hidden, c.eps),
            q_proj: Linear::new(b, "self_attn.q_proj", c.hidden, c.heads * c.head_dim, false),
            k_proj: Linear::new(
                b,
                "self_attn.k_proj",
                c.hidden,
                c.kv_heads * c.head_dim,
                false,
            ),
            v_proj: Linear::new(
                b,
                "self_attn.v_proj",
                c.hidden,
                c.kv_heads * c.head_dim,
                false,
            ),
            o_proj: Linear::new(b, "self_attn.o_proj", c.heads * c.head_dim, c.hidden, false),
            qk_norm: qk_norm(b, "self_attn", QkNormKind::Rms, c.head_dim, c.eps)
                .expect("RMS QK-norm"),
            post_attention_layernorm: RmsNorm::new(b, "post_attention_layernorm", c.hidden, c.eps),
            mlp: FeedForward::new(b, "mlp", c.hidden, c.ffn_hidden, Activation::Swiglu, false),
        }
    }

    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        imp: AttentionImpl,
    ) -> Tensor {
        let (b, n, _) = x.size3().expect("[batch, tokens, hidden]");
        let h = self.input_layernorm.forward(w, x);
        let split = |t: Tensor, heads: i64| t.view([b, n, heads, self.head_dim]).transpose(1, 2);
        let q = split(self.q_proj.forward(w, &h), self.heads);
        let k = split(self.k_proj.forward(w, &h), self.kv_heads);
        let v = split(self.v_proj.forward(w, &h), self.kv_heads);
        let (q, k) = apply_qk_norm(Some(&self.qk_norm), w, q, k);
        let q = apply_rope(&q, &rope.0, &rope.1, RopePairs::Half);
        let k = apply_rope(&k, &rope.0, &rope.1, RopePairs::Half);
        // Grouped-query attention: each key/value head serves heads / kv_heads query heads
        // (transformers' `repeat_kv` before SDPA).
        let groups = self.heads / self.kv_heads;
        let k = k.repeat_interleave_self_int(groups, 1, None);
        let v = v.repeat_interleave_self_int(groups, 1, None);
        let attn = merge_heads(&masked_attention(&q, &k, &v, imp, false, Mask::Causal));
        let x = x + self.o_proj.forward(w, &attn);
        &x + self
            .mlp
            .forward(w, &self.post_attention_layernorm.forward(w, &x))
    }
}

/// The Qwen3-class text encoder.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    pub config: TextEncoderConfig,
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

impl TextEncoder {
    pub fn new(b: &mut Builder, name: &str, config: TextEncoderConfig) -> TextEncoder {
        let b = &mut b.scope(name);
        let c = &config;
        TextEncoder {
            embed_tokens: Embedding::new(b, "embed_tokens", c.vocab, c.hidden),
            layers: (0..c.layers)
                .map(|i| DecoderLayer::new(b, &format!("layers.{i}"), c))
                .collect(),
            norm: RmsNorm::new(b, "norm", c.hidden, c.eps),
            config,
        }
    }

    /// `hidden_states[-2]` for token `ids` `[b, n]`: `[b, n, hidden]`.
    pub fn forward(&self, w: &Weights, ids: &Tensor, imp: AttentionImpl) -> Tensor {
        let c = &self.config;
        let n = ids.size()[1];
        let mut x = self.embed_tokens.forward(w, ids);
        let rope = rotary_angles_by_matmul(n, c.head_dim, c.rope_theta, ids.device());
        let mut penultimate = None;
        for layer in &self.layers {
            penultimate = Some(x.shallow_clone());
            x = layer.forward(w, &x, &rope, imp);
        }
        // The final norm belongs to hidden_states[-1], which the pipeline does not use.
        drop(x);
        penultimate.expect("at least one layer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::{assert_offload_transparent, count, max_diff, within};
    use crate::models::SliceSize;

    #[test]
    fn full_size_parameter_counts() {
        let c = ZImageConfig::turbo();
        assert_eq!((c.ffn_hidden(), c.head_dim()), (10240, 128));
        assert_eq!(c.axes_dims.iter().sum::<i64>(), c.head_dim());
        let dit = count(|b| ZImageTransformer::new(b, "zimage", ZImageConfig::turbo()));
        assert!(within(dit, 6.155e9), "Z-Image DiT: {dit}");
        assert_eq!(dit, 6_154_908_736);
        let te = count(|b| TextEncoder::new(b, "te", TextEncoderConfig::qwen3_4b()));
        assert!(within(te, 4.0e9), "text encoder: {te}");
    }

    #[test]
    fn patchify_round_trips() {
        let mut b = Builder::counting();
        let m = ZImageTransformer::new(&mut b, "z", ZImageConfig::tiny());
        let x = Tensor::randn([2, 4, 6, 8], (Kind::Float, Device::Cpu));
        let p = m.patchify(&x);
        assert_eq!(p.size(), vec![2, 12, 16]);
        assert!(m.unpatchify(&p, 6, 8).equal(&x));
    }

    #[test]
    fn rotary_angles_by_matmul_equal_the_outer_product() {
        let n = 37;
        let pos = Tensor::arange(n, (Kind::Float, Device::Cpu)).unsqueeze(1);
        let (cos, sin) = rope_angles(&pos, &[128], 1e6);
        let (mcos, msin) = rotary_angles_by_matmul(n, 128, 1e6, Device::Cpu);
        assert_eq!(mcos.size(), vec![n, 64]);
        assert!(mcos.allclose(&cos, 1e-5, 1e-6, false));
        assert!(msin.allclose(&sin, 1e-5, 1e-6, false));
    }

    #[test]
    fn rope_pairings_rotate_the_documented_channels() {
        // A rotation keeps norms; angle 0 is the identity.
        let x = Tensor::randn([1, 2, 3, 8], (Kind::Float, Device::Cpu));
        let pos = Tensor::from_slice(&[0.0f32, 1.0, 2.0]).view([3, 1]);
        let (cos, sin) = rope_angles(&pos, &[8], 100.0);
        assert_eq!(cos.size(), vec![3, 4]);
        for pairs in [RopePairs::Interleaved, RopePairs::Half] {
            let y = apply_rope(&x, &cos, &sin, pairs);
            assert!(max_diff(&y.narrow(2, 0, 1), &x.narrow(2, 0, 1)) < 1e-6);
            let norm = |t: &Tensor| t.square().sum_dim_intlist(-1, false, Kind::Float);
            assert!(max_diff(&norm(&y), &norm(&x)) < 1e-4);
        }
        // Interleaved: channels 0 and 1 rotate by angle pos·θ^0 = pos.
        let e = Tensor::zeros([1, 1, 3, 8], (Kind::Float, Device::Cpu));
        let _ = e.narrow(3, 0, 1).fill_(1.0);
        let y = apply_rope(&e, &cos, &sin, RopePairs::Interleaved);
        let got = y.get(0).get(0).get(1).get(1).double_value(&[]);
        assert!((got - 1.0f64.sin()).abs() < 1e-6, "{got}");
        // Half: channel 0 pairs with channel 4.
        let y = apply_rope(&e, &cos, &sin, RopePairs::Half);
        let got = y.get(0).get(0).get(2).get(4).double_value(&[]);
        assert!((got - 2.0f64.sin()).abs() < 1e-6, "{got}");
    }

    #[test]
    fn dit_shapes_attention_implementations_and_offload() {
        tch::manual_seed(0);
        let c = ZImageConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let m = ZImageTransformer::new(&mut b, "z", c.clone());
        let mut w = b.finish();
        let opts = (Kind::Float, Device::Cpu);
        // 3×4 patches (12 tokens, padded to 16) and 5 caption tokens (padded to 8).
        let latent = Tensor::randn([1, c.in_channels, 6, 8], opts);
        let caption = Tensor::randn([1, 5, c.cap_feat_dim], opts);
        let t = Tensor::from_slice(&[0.4f32]);
        let run = |w: &Weights, imp| m.forward(w, &latent, &t, &caption, imp);
        let reference = run(&w, AttentionImpl::Sdpa);
        assert_eq!(reference.size(), latent.size());
        assert!(reference.isfinite().all().int64_value(&[]) == 1);
        let err = max_diff(&run(&w, AttentionImpl::Math), &reference);
        assert!(err < 1e-4, "math: {err}");
        assert_offload_transparent(&mut w, |w| run(w, AttentionImpl::Sdpa), &reference);
    }

    #[test]
    fn text_encoder_is_causal_and_implementations_agree() {
        tch::manual_seed(1);
        let c = TextEncoderConfig::tiny();
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let te = TextEncoder::new(&mut b, "te", c);
        let mut w = b.finish();
        let ids = Tensor::randint(c.vocab, [1, c.max_tokens], (Kind::Int64, Device::Cpu));
        let out = te.forward(&w, &ids, AttentionImpl::Sdpa);
        assert_eq!(out.size(), vec![1, c.max_tokens, c.hidden]);
        for imp in [AttentionImpl::Math, AttentionImpl::Sliced(SliceSize::Max)] {
            let err = max_diff(&te.forward(&w, &ids, imp), &out);
            assert!(err < 1e-4, "{imp}: {err}");
        }
        // Changing the last token leaves every earlier position unchanged.
        let ids2 = ids.copy();
        let _ = ids2
            .narrow(1, c.max_tokens - 1, 1)
            .fill_((ids.int64_value(&[0, c.max_tokens - 1]) + 1) % c.vocab);
        let out2 = te.forward(&w, &ids2, AttentionImpl::Sdpa);
        let head = c.max_tokens - 1;
        assert!(max_diff(&out2.narrow(1, 0, head), &out.narrow(1, 0, head)) < 1e-6);
        assert!(max_diff(&out2, &out) > 0.0);
        w.offload_sequential(Device::Cpu);
        assert!(
            te.forward(&w, &ids, AttentionImpl::Sdpa).equal(&out),
            "sequential offload"
        );
    }
}
