//! Building blocks shared by the Stable-Diffusion UNets and VAEs, following diffusers' modules
//! of the same names (`ResnetBlock2D`, `Downsample2D`, `Upsample2D`, `Transformer2DModel`,
//! `BasicTransformerBlock`), plus the two extra attentions that multiview diffusion adds to
//! every transformer block:
//!
//! - **multiview** self-attention (`attn_multiview`): the views of one object are consecutive
//!   in the batch (`(b n)`); either every view's tokens attend over the concatenation of all
//!   views' tokens (full sequence, as Hunyuan3D-paint's `Basic2p5DTransformerBlock`), or a
//!   query in row `r` of a view attends over row `r` of all views (row-wise, as the MV-Adapter
//!   processor UP2You uses);
//! - **reference** attention (`attn_refview`): queries attend over tokens recorded from a
//!   reference pass (per block, the `norm1` output of the reference images), either all of
//!   them (`N_ref·HW` keys, Hunyuan3D) or a per-view selection of `ratio·HW` of them (UP2You's
//!   top-k selection of `2·HW`).
//!
//! Both extra attentions have the shape of `attn1` (no q/k/v bias, output bias), read the
//! `norm1` output and are added to the residual stream after `attn1`, before the
//! cross-attention, as both reference implementations do (with their blend scales at 1).

use super::attention::{attention, AttentionConfig, AttentionImpl, MultiHeadAttention, QkNormKind};
use super::feed_forward::{Activation, FeedForward};
use super::layers::{Conv2d, GroupNorm, LayerNorm, Linear};
use super::weights::{Builder, Weights};
use tch::{Device, Kind, Tensor};

/// `output_scale_factor` of every ResnetBlock2D in the SD and Hunyuan paint configs.
const OUTPUT_SCALE_FACTOR: f64 = 1.0;

/// `ResnetBlock2D` (`time_embedding_norm="default"`, output scale 1): GroupNorm → SiLU → 3×3
/// conv, plus a projection of the (SiLU-activated) time embedding added per channel, then
/// GroupNorm → SiLU → 3×3 conv; a 1×1 shortcut when the channel count changes. VAEs build it
/// without a time embedding.
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

/// GroupNorm settings of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    pub groups: i64,
    pub eps: f64,
}

impl ResnetBlock2D {
    pub fn new(
        b: &mut Builder,
        name: &str,
        in_ch: i64,
        out_ch: i64,
        temb_ch: Option<i64>,
        norm: Norm,
    ) -> ResnetBlock2D {
        let b = &mut b.scope(name);
        ResnetBlock2D {
            norm1: GroupNorm::new(b, "norm1", norm.groups, in_ch, norm.eps),
            conv1: Conv2d::new(b, "conv1", in_ch, out_ch, 3, 1, 1, true),
            time_emb_proj: temb_ch.map(|t| Linear::new(b, "time_emb_proj", t, out_ch, true)),
            norm2: GroupNorm::new(b, "norm2", norm.groups, out_ch, norm.eps),
            conv2: Conv2d::new(b, "conv2", out_ch, out_ch, 3, 1, 1, true),
            conv_shortcut: (in_ch != out_ch)
                .then(|| Conv2d::new(b, "conv_shortcut", in_ch, out_ch, 1, 1, 0, true)),
        }
    }

    /// `x`: `[B, C_in, H, W]`; `temb`: `[B, T]` (the raw time embedding; the block applies
    /// SiLU itself, as diffusers does).
    /// diffusers' `ResnetBlock2D.forward` statement by statement, releasing each intermediate
    /// where Python's rebinding of `hidden_states` does (a shadowed Rust binding would live to
    /// the end of the function), so the block's peak memory is the real one.
    pub fn forward(&self, w: &Weights, x: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let mut h = self.norm1.forward(w, x);
        h = h.silu();
        h = self.conv1.forward(w, &h);
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            let t = proj.forward(w, &t.silu()).unsqueeze(-1).unsqueeze(-1);
            // Out of place, as in diffusers (`+=` would add in place and save a tensor).
            h = &h + &t;
        }
        h = self.norm2.forward(w, &h);
        h = h.silu();
        h = self.conv2.forward(w, &h);
        let shortcut = match &self.conv_shortcut {
            Some(s) => s.forward(w, x),
            None => x.shallow_clone(),
        };
        residual_output(shortcut, h)
    }
}

/// The end of diffusers' `ResnetBlock2D`: `(input_tensor + hidden_states) / output_scale_factor`.
/// diffusers divides even by 1.0, which allocates one more output-sized tensor, and its locals
/// (the shortcut's output and `hidden_states`) stay alive until the block returns: the sum is
/// taken by reference and both inputs are dropped only after the division.
pub fn residual_output(shortcut: Tensor, hidden: Tensor) -> Tensor {
    let sum = &shortcut + &hidden;
    let out = sum / OUTPUT_SCALE_FACTOR;
    drop((shortcut, hidden));
    out
}

/// A step of a block: one resnet, attention or resampler applied to the previous output.
pub type BlockStep<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;

/// diffusers' `sample = block(sample)` around a `DownEncoderBlock2D` or `UpDecoderBlock2D`: each
/// step's output replaces the previous one inside the block, but the block's input stays alive
/// (the caller's `sample`) until the whole block returns.
pub fn block_holding_input<'a>(
    input: Tensor,
    steps: impl IntoIterator<Item = BlockStep<'a>>,
) -> Tensor {
    let mut out: Option<Tensor> = None;
    for step in steps {
        out = Some(step(out.as_ref().unwrap_or(&input)));
    }
    out.unwrap_or(input)
}

/// `Downsample2D` with a conv: 3×3, stride 2. UNets pad by 1 on every side; the VAE encoder
/// pads asymmetrically (right and bottom by one, `padding=0` in diffusers).
#[derive(Debug, Clone)]
pub struct Downsample2D {
    pub conv: Conv2d,
    pub asymmetric_pad: bool,
}

impl Downsample2D {
    pub fn new(b: &mut Builder, name: &str, ch: i64, asymmetric_pad: bool) -> Downsample2D {
        let b = &mut b.scope(name);
        let padding = if asymmetric_pad { 0 } else { 1 };
        Downsample2D {
            conv: Conv2d::new(b, "conv", ch, ch, 3, 2, padding, true),
            asymmetric_pad,
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor) -> Tensor {
        if self.asymmetric_pad {
            self.conv.forward(w, &x.constant_pad_nd([0, 1, 0, 1]))
        } else {
            self.conv.forward(w, x)
        }
    }
}

/// `Upsample2D` with a conv: nearest-neighbour ×2 (or to an explicit size, diffusers'
/// `upsample_size` when the latent is not a multiple of the UNet's total downsampling), then
/// a 3×3 conv.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(b: &mut Builder, name: &str, ch: i64) -> Upsample2D {
        let b = &mut b.scope(name);
        Upsample2D {
            conv: Conv2d::new(b, "conv", ch, ch, 3, 1, 1, true),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor, size: Option<(i64, i64)>) -> Tensor {
        let up = match size {
            Some((h, wd)) => x.upsample_nearest2d([h, wd], None, None),
            None => {
                let (_, _, h, wd) = x.size4().expect("[B, C, H, W]");
                x.upsample_nearest2d([2 * h, 2 * wd], 2.0, 2.0)
            }
        };
        self.conv.forward(w, &up)
    }
}

/// How the multiview attention groups tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multiview {
    /// No multiview attention.
    None,
    /// Every view's tokens attend over all `views·H·W` tokens of its group (Hunyuan3D-paint).
    Full,
    /// A query in row `r` of a view attends over row `r` of every view: `views·W` keys
    /// (MV-Adapter's row-wise attention), all views' queries of a row in one group.
    RowWise,
    /// The same attention as UP2You's processor computes it: one query group per (view, row),
    /// the row's keys and values over all views materialised once per view
    /// (`repeat_interleave`), so that memory grows with `views²`.
    RowWiseRepeat,
}

/// Which recorded reference tokens a view's queries attend over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReferenceSelect {
    /// All `N_ref·HW` recorded tokens, repeated for every view (Hunyuan3D-paint).
    All,
    /// `int(min(ratio, N_ref)·HW)` tokens per target view (UP2You's feature selector takes the
    /// top `max_select_ratio·HW`, ratio 2, capped at the number of reference images). The
    /// selection is data-dependent there; here each view takes a fixed, view-dependent subset
    /// [inferred: same gather and attention cost, no scoring].
    PerView { ratio: f64 },
}

/// The extra attentions of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtraAttention {
    pub multiview: Multiview,
    /// Views per object: consecutive batch entries `(b n)` form one group.
    pub views: i64,
    /// `Some`: the block has a reference attention that reads recorded tokens.
    pub reference: Option<ReferenceSelect>,
}

impl ExtraAttention {
    pub const NONE: ExtraAttention = ExtraAttention {
        multiview: Multiview::None,
        views: 1,
        reference: None,
    };
}

/// What the transformer blocks do with reference tokens during one forward pass.
pub enum ReferenceMode<'a> {
    /// Reference attentions are skipped (Hunyuan3D's mode without `r`).
    Off,
    /// Reference attentions read `tokens.layers[i]` in block `i` (diffusers' module order).
    Read(&'a ReferenceTokens),
    /// Every block records its `norm1` output as `(b n) l c → b (n l) c` with
    /// `n = images_per_group` (Hunyuan3D's `w` mode on the reference UNet: a view of the
    /// norm). With `every_attention`, a copy of the input of `attn1` and of `attn2` instead,
    /// each taken as that attention starts (UP2You's processors `clone()` every input into
    /// `cache_hidden_states`): two entries per block, in module order.
    Record {
        images_per_group: i64,
        tokens: Vec<Tensor>,
        every_attention: bool,
    },
}

/// Reference tokens per transformer block, each `[groups, tokens, channels]`, or, when
/// `per_view` is set, already selected for every query image (`[batch, k, channels]`, used as
/// they are: UP2You selects once after its reference pass).
#[derive(Debug)]
pub struct ReferenceTokens {
    pub layers: Vec<Tensor>,
    pub per_view: bool,
}

/// Per-forward state threaded through the transformer blocks.
pub struct BlockState<'a> {
    /// Text (or learned) context for the cross-attentions, `[B, tokens, cross_dim]`.
    pub context: &'a Tensor,
    pub imp: AttentionImpl,
    pub reference: ReferenceMode<'a>,
    /// Index of the next transformer block in module order.
    pub next_block: usize,
}

/// `BasicTransformerBlock` of SD UNets (`norm_type="layer_norm"`, GEGLU feed-forward of inner
/// width 4·C, no attention bias, output bias): LayerNorm → self-attention, LayerNorm →
/// cross-attention over the context, LayerNorm → feed-forward, each residual; optionally with
/// the extra attentions described in the module docs.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: MultiHeadAttention,
    pub attn_refview: Option<MultiHeadAttention>,
    pub attn_multiview: Option<MultiHeadAttention>,
    pub norm2: LayerNorm,
    pub attn2: MultiHeadAttention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
    pub extra: ExtraAttention,
}

/// Shape of the transformer blocks of one UNet level.
#[derive(Debug, Clone, Copy)]
pub struct TransformerConfig {
    pub channels: i64,
    pub heads: i64,
    pub cross_attention_dim: i64,
    pub upcast_attention: bool,
    /// LayerNorm eps in the blocks (diffusers' default 1e-5).
    pub layer_norm_eps: f64,
    /// GroupNorm before `proj_in` (diffusers hard-codes eps 1e-6 there).
    pub norm: Norm,
    pub layers: i64,
    /// `use_linear_projection`: `proj_in`/`proj_out` are Linear over tokens (SD 2.x); 1×1
    /// convs otherwise (SD 1.x). Same parameter count, different kernels.
    pub linear_projection: bool,
    pub extra: ExtraAttention,
}

impl BasicTransformerBlock {
    pub fn new(b: &mut Builder, name: &str, c: &TransformerConfig) -> BasicTransformerBlock {
        let b = &mut b.scope(name);
        let self_attn = AttentionConfig {
            query_dim: c.channels,
            context_dim: c.channels,
            heads: c.heads,
            head_dim: c.channels / c.heads,
            qkv_bias: false,
            out_bias: true,
            qk_norm: QkNormKind::None,
            upcast: c.upcast_attention,
        };
        let cross_attn = AttentionConfig {
            context_dim: c.cross_attention_dim,
            ..self_attn
        };
        let ln =
            |b: &mut Builder, s: &str| LayerNorm::new(b, s, c.channels, c.layer_norm_eps, true);
        BasicTransformerBlock {
            norm1: ln(b, "norm1"),
            attn1: MultiHeadAttention::new(b, "attn1", self_attn),
            attn_refview: c
                .extra
                .reference
                .map(|_| MultiHeadAttention::new(b, "attn_refview", self_attn)),
            attn_multiview: (c.extra.multiview != Multiview::None)
                .then(|| MultiHeadAttention::new(b, "attn_multiview", self_attn)),
            norm2: ln(b, "norm2"),
            attn2: MultiHeadAttention::new(b, "attn2", cross_attn),
            norm3: ln(b, "norm3"),
            ff: FeedForward::new(b, "ff", c.channels, 4 * c.channels, Activation::Geglu, true),
            extra: c.extra,
        }
    }

    /// `x`: `[B, H·W, C]` tokens of an `height × width` feature map.
    pub fn forward(
        &self,
        w: &Weights,
        x: &Tensor,
        height: i64,
        width: i64,
        st: &mut BlockState<'_>,
    ) -> Tensor {
        let index = st.next_block;
        st.next_block += 1;
        // Lifetimes as in diffusers' `BasicTransformerBlock.forward`, where each rebinding
        // frees the previous tensor: a normalised input lives until the next norm is
        // computed, an attention output until the next attention returns, and the last
        // attention output, norm and feed-forward output until the block returns.
        let norm = self.norm1.forward(w, x);
        record_attention_input(&mut st.reference, &norm, true);
        let attn_output = self.attn1.forward(w, &norm, None, st.imp);
        let mut x = &attn_output + x;
        match &mut st.reference {
            ReferenceMode::Off | ReferenceMode::Record { .. } => {}
            ReferenceMode::Read(recorded) => {
                if let (Some(attn), Some(select)) = (&self.attn_refview, self.extra.reference) {
                    let layer = recorded
                        .layers
                        .get(index)
                        .unwrap_or_else(|| panic!("reference tokens for block {index} missing"));
                    let keys = if recorded.per_view {
                        layer.shallow_clone()
                    } else {
                        reference_keys(layer, select, self.extra.views, &norm)
                    };
                    x = &x + attn.forward(w, &norm, Some(&keys), st.imp);
                }
            }
        }
        if let Some(attn) = &self.attn_multiview {
            // As in Hunyuan3D-paint: a single view has nothing to attend across. A recording
            // pass runs without it, as UP2You's reference pass through its own UNet does
            // (`use_mv=False`); Hunyuan3D's recording UNet has none.
            let recording = matches!(st.reference, ReferenceMode::Record { .. });
            if self.extra.views > 1 && !recording {
                let (views, imp) = (self.extra.views, st.imp);
                let mv = |t: &Tensor| attn.forward(w, t, None, imp);
                x = &x
                    + match self.extra.multiview {
                        Multiview::RowWise => row_wise(&norm, views, height, width, mv),
                        Multiview::RowWiseRepeat => {
                            row_wise_repeat(attn, w, &norm, views, (height, width), imp)
                        }
                        _ => full_sequence(&norm, views, mv),
                    };
            }
        }
        let norm = {
            let norm2 = self.norm2.forward(w, &x);
            drop(norm);
            norm2
        };
        record_attention_input(&mut st.reference, &norm, false);
        let attn_output = {
            let attn2 = self.attn2.forward(w, &norm, Some(st.context), st.imp);
            drop(attn_output);
            attn2
        };
        let x = &attn_output + x;
        let norm = {
            let norm3 = self.norm3.forward(w, &x);
            drop(norm);
            norm3
        };
        let ff_output = self.ff.forward(w, &norm);
        &ff_output + x
    }
}

/// Records `input` (`[(b n), l, c]`, an attention's input) as `[b, (n l), c]` when `mode`
/// records: `attn1`'s input always, as a view or (with `every_attention`) a copy; `attn2`'s
/// only with `every_attention`, as a copy.
fn record_attention_input(mode: &mut ReferenceMode<'_>, input: &Tensor, attn1: bool) {
    if let ReferenceMode::Record {
        images_per_group,
        tokens,
        every_attention,
    } = mode
    {
        if !attn1 && !*every_attention {
            return;
        }
        let (bn, l, c) = input.size3().expect("[B, L, C]");
        let shape = [bn / *images_per_group, *images_per_group * l, c];
        tokens.push(if *every_attention {
            input.copy().view(shape)
        } else {
            input.view(shape)
        });
    }
}

/// `(b n) l c → b (n l) c`, attention, and back.
fn full_sequence(x: &Tensor, views: i64, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let (bn, l, c) = x.size3().expect("[B, L, C]");
    assert!(
        bn % views == 0,
        "batch {bn} is not a multiple of {views} views"
    );
    f(&x.view([bn / views, views * l, c])).view([bn, l, c])
}

/// `(b n) (h w) c → (b h) (n w) c`, attention, and back.
fn row_wise(
    x: &Tensor,
    views: i64,
    height: i64,
    width: i64,
    f: impl Fn(&Tensor) -> Tensor,
) -> Tensor {
    let (bn, l, c) = x.size3().expect("[B, L, C]");
    assert!(
        bn % views == 0,
        "batch {bn} is not a multiple of {views} views"
    );
    assert_eq!(l, height * width, "tokens do not match the feature map");
    let groups = bn / views;
    let rows = x
        .view([groups, views, height, width, c])
        .permute([0, 2, 1, 3, 4])
        .reshape([groups * height, views * width, c]);
    f(&rows)
        .view([groups, height, views, width, c])
        .permute([0, 2, 1, 3, 4])
        .reshape([bn, l, c])
}

/// [`Multiview::RowWiseRepeat`]: UP2You's `row_attention` statement by statement. Queries are
/// grouped per (view, row) (`[(b n h), w, heads, d]`); the row's keys and values over all views
/// (`[b, h, n·w, heads, d]`) are repeated for every view before the attention.
fn row_wise_repeat(
    attn: &MultiHeadAttention,
    w: &Weights,
    x: &Tensor,
    views: i64,
    (height, width): (i64, i64),
    imp: AttentionImpl,
) -> Tensor {
    let (bn, l, c) = x.size3().expect("[B, L, C]");
    assert!(
        bn % views == 0,
        "batch {bn} is not a multiple of {views} views"
    );
    assert_eq!(l, height * width, "tokens do not match the feature map");
    let (b, heads, d) = (bn / views, attn.heads, attn.head_dim);
    let rows_across_views = |t: Tensor| {
        t.view([b, views, height, width, heads, d])
            .permute([0, 2, 1, 3, 4, 5])
            .reshape([b, height, views * width, heads, d])
    };
    let query = attn
        .to_q
        .forward(w, x)
        .view([b * views * height, width, heads, d])
        .transpose(1, 2);
    let repeated = |t: Tensor| {
        rows_across_views(t)
            .repeat_interleave_self_int(views, 0, None)
            .view([b * views * height, views * width, heads, d])
            .transpose(1, 2)
    };
    let key = repeated(attn.to_k.forward(w, x));
    let value = repeated(attn.to_v.forward(w, x));
    let out = attention(&query, &key, &value, imp, attn.upcast)
        .transpose(1, 2)
        .reshape([bn, l, c]);
    attn.to_out.forward(w, &out)
}

/// Keys for the reference attention of `queries` (`[(b n), L, C]`) from one block's recorded
/// tokens (`[groups or 1, T, C]`): repeated for every view (materialised, as the reference
/// implementation's `repeat` does), or a per-view selection.
pub fn reference_keys(
    recorded: &Tensor,
    select: ReferenceSelect,
    views: i64,
    queries: &Tensor,
) -> Tensor {
    let (bn, l, _) = queries.size3().expect("[B, L, C]");
    let (g, t, c) = recorded.size3().expect("[groups, tokens, C]");
    let groups = bn / views;
    let recorded = if g == groups {
        recorded.shallow_clone()
    } else {
        assert_eq!(g, 1, "reference tokens for {g} groups, batch has {groups}");
        recorded.expand([groups, t, c], false)
    };
    match select {
        ReferenceSelect::All => {
            recorded
                .unsqueeze(1)
                .repeat([1, views, 1, 1])
                .view([groups * views, t, c])
        }
        ReferenceSelect::PerView { ratio } => {
            let idx = per_view_token_indices(ratio, l, t, views, recorded.device());
            let k = idx.size()[1];
            recorded
                .index_select(1, &idx.flatten(0, 1))
                .view([groups * views, k, c])
        }
    }
}

/// The recorded tokens each view keeps under [`ReferenceSelect::PerView`], `[views, k]`:
/// `k = ratio·L` for `L` query tokens per view, capped at the `T` recorded (`T = N_ref·HW`, so
/// capping at T is capping the ratio at N_ref); view `v` keeps `v·k .. (v+1)·k` modulo `T`, a
/// stand-in for the top-k of its weight map (random weights make the real one noise), kept in
/// index order as the real selector keeps it.
pub fn per_view_token_indices(ratio: f64, l: i64, t: i64, views: i64, device: Device) -> Tensor {
    let k = ((ratio * l as f64) as i64).clamp(1, t);
    (Tensor::arange(k, (Kind::Int64, device)).unsqueeze(0)
        + Tensor::arange(views, (Kind::Int64, device)).unsqueeze(1) * k)
        .remainder(t)
}

/// Projection into and out of the transformer's token space.
#[derive(Debug, Clone)]
pub enum Projection {
    Linear(Linear),
    Conv(Conv2d),
}

/// `Transformer2DModel` for continuous inputs: GroupNorm → `proj_in` → transformer blocks →
/// `proj_out`, plus the input as residual.
#[derive(Debug, Clone)]
pub struct Transformer2D {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
}

impl Transformer2D {
    pub fn new(b: &mut Builder, name: &str, c: &TransformerConfig) -> Transformer2D {
        let b = &mut b.scope(name);
        let ch = c.channels;
        let proj = |b: &mut Builder, s: &str| {
            if c.linear_projection {
                Projection::Linear(Linear::new(b, s, ch, ch, true))
            } else {
                Projection::Conv(Conv2d::new(b, s, ch, ch, 1, 1, 0, true))
            }
        };
        let norm = GroupNorm::new(b, "norm", c.norm.groups, ch, c.norm.eps);
        let proj_in = proj(b, "proj_in");
        let blocks = (0..c.layers)
            .map(|i| BasicTransformerBlock::new(b, &format!("transformer_blocks.{i}"), c))
            .collect();
        Transformer2D {
            norm,
            proj_in,
            blocks,
            proj_out: proj(b, "proj_out"),
        }
    }

    pub fn forward(&self, w: &Weights, x: &Tensor, st: &mut BlockState<'_>) -> Tensor {
        let (b, c, h, wd) = x.size4().expect("[B, C, H, W]");
        let to_tokens = |t: &Tensor| t.permute([0, 2, 3, 1]).reshape([b, h * wd, c]);
        // diffusers rebinds `hidden_states`: the norm's output is freed once reshaped (linear
        // projection) or projected (conv), the reshaped copy once projected.
        let mut tokens = {
            let normed = self.norm.forward(w, x);
            match &self.proj_in {
                Projection::Linear(l) => {
                    let flat = to_tokens(&normed);
                    drop(normed);
                    l.forward(w, &flat)
                }
                Projection::Conv(conv) => {
                    let projected = conv.forward(w, &normed);
                    drop(normed);
                    to_tokens(&projected)
                }
            }
        };
        for block in &self.blocks {
            tokens = block.forward(w, &tokens, h, wd, st);
        }
        let out = match &self.proj_out {
            Projection::Linear(l) => l
                .forward(w, &tokens)
                .reshape([b, h, wd, c])
                .permute([0, 3, 1, 2])
                .contiguous(),
            Projection::Conv(conv) => conv.forward(
                w,
                &tokens
                    .reshape([b, h, wd, c])
                    .permute([0, 3, 1, 2])
                    .contiguous(),
            ),
        };
        out + x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_util::opts;
    use tch::{Device, Kind};

    #[test]
    fn resnet_block_shapes_and_shortcut() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let norm = Norm {
            groups: 4,
            eps: 1e-5,
        };
        let same = ResnetBlock2D::new(&mut b, "a", 8, 8, Some(16), norm);
        let wider = ResnetBlock2D::new(&mut b, "b", 8, 12, None, norm);
        let w = b.finish();
        assert!(same.conv_shortcut.is_none() && wider.conv_shortcut.is_some());
        let x = Tensor::randn([2, 8, 5, 6], opts());
        let t = Tensor::randn([2, 16], opts());
        assert_eq!(same.forward(&w, &x, Some(&t)).size(), vec![2, 8, 5, 6]);
        assert_eq!(wider.forward(&w, &x, None).size(), vec![2, 12, 5, 6]);
    }

    #[test]
    fn samplers_halve_and_double() {
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let down = Downsample2D::new(&mut b, "d", 4, false);
        let down_vae = Downsample2D::new(&mut b, "dv", 4, true);
        let up = Upsample2D::new(&mut b, "u", 4);
        let w = b.finish();
        let x = Tensor::randn([1, 4, 8, 6], opts());
        assert_eq!(down.forward(&w, &x).size(), vec![1, 4, 4, 3]);
        assert_eq!(down_vae.forward(&w, &x).size(), vec![1, 4, 4, 3]);
        assert_eq!(up.forward(&w, &x, None).size(), vec![1, 4, 16, 12]);
        assert_eq!(
            up.forward(&w, &x, Some((15, 11))).size(),
            vec![1, 4, 15, 11]
        );
    }

    /// The row-wise rearrangement is equivalent to gathering row `r` of every view by hand.
    #[test]
    fn row_wise_groups_rows_across_views() {
        let (views, h, wd, c) = (3, 2, 4, 5);
        let x = Tensor::randn([2 * views, h * wd, c], opts());
        // f = identity on the grouped tensor, but record the groups it sees.
        let seen = std::cell::RefCell::new(None);
        let back = row_wise(&x, views, h, wd, |t| {
            *seen.borrow_mut() = Some(t.copy());
            t.shallow_clone()
        });
        assert!(back.equal(&x), "the rearrangement round-trips");
        let grouped = seen.into_inner().unwrap();
        assert_eq!(grouped.size(), vec![2 * h, views * wd, c]);
        // Group (batch 1, row 1), view 2, column 3 == x[(1·views + 2), 1·W + 3].
        let got = grouped.get(h + 1).get(2 * wd + 3);
        let want = x.get(views + 2).get(wd + 3);
        assert!(got.equal(&want));
        // The full-sequence form concatenates whole views.
        let full = full_sequence(&x, views, |t| {
            assert_eq!(t.size(), vec![2, views * h * wd, c]);
            t.shallow_clone()
        });
        assert!(full.equal(&x));
    }

    /// UP2You's repeat form computes the same attention as the grouped one, and holds the
    /// row's keys and values once per view: `views` times the grouped form's.
    #[test]
    fn row_attention_repeated_per_view_equals_the_grouped_form() {
        use super::super::attention::{AttentionConfig, QkNormKind};
        let (views, h, wd, c) = (3, 2, 4, 8);
        let mut b = Builder::new(Kind::Float, Device::Cpu);
        let attn = MultiHeadAttention::new(
            &mut b,
            "mv",
            AttentionConfig {
                query_dim: c,
                context_dim: c,
                heads: 2,
                head_dim: 4,
                qkv_bias: false,
                out_bias: true,
                qk_norm: QkNormKind::None,
                upcast: false,
            },
        );
        let w = b.finish();
        let x = Tensor::randn([2 * views, h * wd, c], opts());
        let grouped = row_wise(&x, views, h, wd, |t| {
            attn.forward(&w, t, None, AttentionImpl::Sdpa)
        });
        let repeated = row_wise_repeat(&attn, &w, &x, views, (h, wd), AttentionImpl::Sdpa);
        assert!(
            repeated.allclose(&grouped, 1e-5, 1e-6, false),
            "max difference {}",
            (&repeated - &grouped).abs().max().double_value(&[])
        );
    }

    #[test]
    fn reference_keys_repeat_or_select_per_view() {
        let views = 3;
        let recorded = Tensor::randn([2, 10, 4], opts());
        let queries = Tensor::zeros([2 * views, 6, 4], opts());
        let all = reference_keys(&recorded, ReferenceSelect::All, views, &queries);
        assert_eq!(all.size(), vec![6, 10, 4]);
        assert!(all.get(4).equal(&recorded.get(1)));
        let some = reference_keys(
            &recorded,
            ReferenceSelect::PerView { ratio: 0.5 },
            views,
            &queries,
        );
        assert_eq!(some.size(), vec![6, 3, 4]);
        // View 2 of group 1 takes tokens 6, 7, 8.
        assert!(some.get(5).equal(&recorded.get(1).narrow(0, 6, 3)));
        // At most all recorded tokens: 2·HW = 12 is capped at 10.
        let capped = reference_keys(
            &recorded,
            ReferenceSelect::PerView { ratio: 2.0 },
            views,
            &queries,
        );
        assert_eq!(capped.size(), vec![6, 10, 4]);
        // One recorded group serves every group.
        let shared = reference_keys(
            &recorded.narrow(0, 0, 1),
            ReferenceSelect::All,
            views,
            &queries,
        );
        assert!(shared.get(4).equal(&recorded.get(0)));
    }
}
