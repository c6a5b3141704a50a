//! Where the replicas release their intermediates, checked on the CPU by counting the bytes of
//! live CPU tensors (the shim wraps libtorch's CPU allocator). The real diffusers code frees
//! each intermediate when `hidden_states` is rebound or `del`eted; a replica that keeps one
//! alive longer shows a higher peak on the GPU (it did: +10–19 % with math attention, +24 % in
//! a plain VAE decode). Each test's bound sits between the real release order's peak and the
//! peak of the order it replaced.

use claimbench::ffi::cpu_peak_bytes_of;
use claimbench::models::attention::{attention, AttentionImpl, SliceSize};
use claimbench::models::unet_blocks::{
    block_holding_input, residual_output, BlockStep, Norm, ResnetBlock2D,
};
use claimbench::models::Builder;
use std::sync::Mutex;

/// Asserts an allocation log equals the expected one, showing both in named units.
fn assert_sequence(log: &[i64], expected: &[i64], units: &[(i64, &str)]) {
    assert_eq!(
        log,
        expected,
        "allocations (+) and frees (-): got {}, expected {}",
        in_units(log, units),
        in_units(expected, units)
    );
}

/// A log of allocations (+bytes) and frees (-bytes) written in named units, for messages.
fn in_units(log: &[i64], units: &[(i64, &str)]) -> String {
    let name = |n: &i64| {
        let sign = if *n < 0 { "-" } else { "+" };
        match units.iter().find(|(size, _)| *size == n.abs()) {
            Some((_, unit)) => format!("{sign}{unit}"),
            None => format!("{sign}{}B", n.abs()),
        }
    };
    log.iter().map(name).collect::<Vec<_>>().join(" ")
}
use tch::{Device, Kind, Tensor};

/// The counter sees every CPU allocation of the process: one test at a time.
static COUNTER: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    // Parallel CPU kernels allocate per-thread scratch buffers that the counter would see (the
    // GPU kernels being modelled have none): one intra-op thread, whatever OMP_NUM_THREADS says.
    tch::set_num_threads(1);
    COUNTER.lock().unwrap_or_else(|e| e.into_inner())
}

fn peak_of<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let (out, peak) = cpu_peak_bytes_of(f).unwrap();
    (out, peak as f64)
}

fn bytes(t: &Tensor) -> f64 {
    (t.numel() * t.kind().elt_size_in_bytes()) as f64
}

/// Upcast math attention (SD 2.1's `upcast_attention`): fp32 scores are freed before the
/// probabilities are cast back to fp16, so two fp32 score matrices are the most ever alive.
/// Keeping the scores through the cast and the final matmul made it 2.5.
#[test]
fn upcast_math_attention_holds_at_most_two_score_matrices() {
    let _alone = alone();
    tch::manual_seed(0);
    let (batch, heads, tokens, d) = (1, 2, 256, 8);
    let qkv = || Tensor::randn([batch, heads, tokens, d], (Kind::Half, Device::Cpu));
    let (q, k, v) = (qkv(), qkv(), qkv());
    let scores = (batch * heads * tokens * tokens * 4) as f64;
    let (out, peak) = peak_of(|| attention(&q, &k, &v, AttentionImpl::Math, true));
    assert_eq!(out.kind(), Kind::Half);
    assert!(
        peak <= 2.25 * scores,
        "peak {peak} B = {:.2} fp32 score matrices",
        peak / scores
    );
    assert!(
        peak >= 2.0 * scores,
        "peak {peak} B: the scores were not materialised twice"
    );
}

/// The block's end keeps `hidden_states` alive through the division, as diffusers' frame does:
/// two tensors beyond the inputs (the sum and the quotient) are alive with both inputs. Freeing
/// `hidden_states` at the addition made it one, and a sliced VAE decode, which peaks at the end
/// of its last 128-channel block, 10 % lower than diffusers'. (In the whole block a CPU
/// convolution's workspace, above one activation, hides this.)
#[test]
fn a_resnet_block_ends_with_its_inputs_alive_through_the_division() {
    let _alone = alone();
    // Count from here: the inputs' frees must be seen, and tensors allocated before the counter
    // was installed are not.
    peak_of(|| ());
    let x = || Tensor::randn([1, 8, 32, 32], (Kind::Float, Device::Cpu));
    let (shortcut, hidden) = (x(), x());
    let activation = bytes(&shortcut);
    let (out, peak) = peak_of(move || residual_output(shortcut, hidden));
    assert_eq!(out.size(), [1, 8, 32, 32]);
    assert!(
        (peak - 2.0 * activation).abs() < 0.05 * activation,
        "peak {:.2} activations beyond the inputs, diffusers' order gives 2",
        peak / activation
    );
}

/// Inside `sample = up_block(sample)` the block's input stays alive until the block returns, so
/// a two-resnet block holds its input beside the first resnet's output while the second runs.
/// Freeing the input after the first resnet made the replica's sliced VAE decode peak one
/// 512-channel 384² activation (144 MiB) below diffusers'.
#[test]
fn a_vae_block_holds_its_input_until_it_returns() {
    let _alone = alone();
    tch::manual_seed(0);
    peak_of(|| ());
    let (channels, size) = (32, 32);
    let norm = Norm {
        groups: 8,
        eps: 1e-6,
    };
    let mut b = Builder::new(Kind::Float, Device::Cpu);
    let resnets = [
        ResnetBlock2D::new(&mut b, "resnets.0", channels, channels, None, norm),
        ResnetBlock2D::new(&mut b, "resnets.1", channels, channels, None, norm),
    ];
    let w = b.finish();
    let x = Tensor::randn([1, channels, size, size], (Kind::Float, Device::Cpu));
    let _ = resnets[0].forward(&w, &x, None);
    let activation = bytes(&x);
    let (_, one) = peak_of(|| resnets[0].forward(&w, &x, None));
    let input = x.copy();
    let steps = resnets
        .iter()
        .map(|r| -> BlockStep { Box::new(|x: &Tensor| r.forward(&w, x, None)) });
    let (out, peak) = peak_of(move || block_holding_input(input, steps));
    assert_eq!(out.size(), x.size());
    assert!(
        (peak - (one + activation)).abs() < 0.05 * activation,
        "peak {:.2} activations beyond the input; one resnet's {:.2} plus the first's output expected",
        peak / activation,
        one / activation
    );
}

/// Sliced attention writes each slice into one output buffer (diffusers' `SlicedAttnProcessor`)
/// rather than collecting the slices and concatenating them, which held the output twice.
#[test]
fn sliced_attention_holds_the_output_once() {
    let _alone = alone();
    tch::manual_seed(0);
    let (batch, heads, tokens, d) = (1, 8, 64, 64);
    let qkv = || Tensor::randn([batch, heads, tokens, d], (Kind::Float, Device::Cpu));
    let (q, k, v) = (qkv(), qkv(), qkv());
    let (out, peak) =
        peak_of(|| attention(&q, &k, &v, AttentionImpl::Sliced(SliceSize::Max), false));
    let reference = attention(&q, &k, &v, AttentionImpl::Sdpa, false);
    assert!(out.allclose(&reference, 1e-4, 1e-5, false));
    let output = bytes(&out);
    let slice_scores = (tokens * tokens * 4) as f64;
    assert!(
        peak <= output + 3.0 * slice_scores + 2.0 * output / heads as f64,
        "peak {peak} B = {:.2} outputs",
        peak / output
    );
}

/// A ResnetBlock2D allocates three output-sized tensors beyond its input at its end (the second
/// conv's output, alive until diffusers' block returns, the residual sum and the division by
/// `output_scale_factor`), or two plus a convolution's workspace. Keeping the first conv's
/// output and the norm alive through the second conv made it four plus workspace.
#[test]
fn resnet_block_releases_each_intermediate_as_diffusers_does() {
    let _alone = alone();
    tch::manual_seed(0);
    let (channels, size) = (32, 32);
    let norm = Norm {
        groups: 8,
        eps: 1e-6,
    };
    let mut b = Builder::new(Kind::Float, Device::Cpu);
    let block = ResnetBlock2D::new(&mut b, "block", channels, channels, None, norm);
    let w = b.finish();
    let x = Tensor::randn([1, channels, size, size], (Kind::Float, Device::Cpu));
    // Warm up: first calls may pack weights or build convolution primitives.
    let _ = block.forward(&w, &x, None);
    let activation = bytes(&x);
    let (_, conv) = peak_of(|| block.conv2.forward(&w, &x));
    let workspace = (conv - activation).max(0.0);
    let (out, peak) = peak_of(|| block.forward(&w, &x, None));
    assert_eq!(out.size(), x.size());
    eprintln!(
        "peak {:.2} activations, convolution workspace {:.2}",
        peak / activation,
        workspace / activation
    );
    // diffusers keeps `hidden_states` alive through the division, so three are alive at the
    // end; freeing it at the addition saved one (a sliced VAE decode peaks there: 1.10×).
    assert!(
        peak >= 3.0 * activation,
        "peak {peak} B = {:.2} activations: the second conv's output was freed before the block returned",
        peak / activation
    );
    let expected = (3.0 * activation).max(2.0 * activation + workspace);
    assert!(
        peak <= expected + 0.05 * activation,
        "peak {peak} B = {:.2} activations (convolution workspace {:.2})",
        peak / activation,
        workspace / activation
    );
}

/// Self-attention of width `heads`·64 with `upcast_attention` over `[batch, tokens, width]`
/// random tokens in `kind`, run once unlogged, then with math attention under the allocation
/// log: (input, output, SDPA's output, log).
fn logged_self_attention(
    kind: Kind,
    batch: i64,
    tokens: i64,
    heads: i64,
) -> (Tensor, Tensor, Tensor, Vec<i64>) {
    use claimbench::ffi::cpu_allocation_log_of;
    use claimbench::models::attention::{AttentionConfig, MultiHeadAttention, QkNormKind};
    tch::manual_seed(0);
    let head_dim = 64;
    let channels = heads * head_dim;
    let mut b = Builder::new(kind, Device::Cpu);
    let attn = MultiHeadAttention::new(
        &mut b,
        "attn",
        AttentionConfig {
            query_dim: channels,
            context_dim: channels,
            heads,
            head_dim,
            qkv_bias: false,
            out_bias: true,
            qk_norm: QkNormKind::None,
            upcast: true,
        },
    );
    let w = b.finish();
    let x = Tensor::randn([batch, tokens, channels], (kind, Device::Cpu));
    let _ = attn.forward(&w, &x, None, AttentionImpl::Math);
    let (out, log) =
        cpu_allocation_log_of(|| attn.forward(&w, &x, None, AttentionImpl::Math)).unwrap();
    let reference = attn.forward(&w, &x, None, AttentionImpl::Sdpa);
    (x, out, reference, log)
}

/// Math attention runs diffusers' `AttnProcessor` statement by statement, so that the CUDA
/// caching allocator sees the same requests in the same order (its placement, hence reserved
/// memory, follows from that history): the projections are folded by copies and each freed
/// once copied, `baddbmm` fills the scores over an empty input of their size that is freed
/// right after, the scores are freed once softmaxed, the output is unfolded by a copy, projected
/// and divided by `rescale_output_factor` into a new tensor, each input freed after its step.
/// The folded q, k, v and the probabilities live until the processor returns. (fp32: the
/// upcast copies, pinned by the fp16 test below, are no-ops here.)
#[test]
fn math_attention_allocates_in_diffusers_attn_processor_order() {
    let _alone = alone();
    let (batch, tokens, heads) = (2, 256, 8);
    let (x, out, reference, log) = logged_self_attention(Kind::Float, batch, tokens, heads);
    assert!(out.allclose(&reference, 1e-4, 1e-5, false));
    let p = bytes(&x) as i64;
    let s = batch * heads * tokens * tokens * 4;
    // Kernel scratch below half a projection is not part of the model's sequence.
    let log: Vec<i64> = log.into_iter().filter(|n| n.abs() >= p / 2).collect();
    #[rustfmt::skip]
    let until_return = [
        p, p, p,     // to_q, to_k, to_v
        p, -p,       // head_to_batch_dim(query): the copy, then the projection is freed
        p, -p,       // ... key
        p, -p,       // ... value
        s, s, -s,    // baddbmm's empty input, the scores, the input freed
        s, -s,       // softmax, the scores freed
        p,           // bmm(probabilities, value)
        p, -p,       // batch_to_head_dim's copy, the bmm output freed
        p, -p,       // to_out, its input freed
        p, -p,       // / rescale_output_factor, its input freed
    ];
    let units = [(p, "P"), (s, "S")];
    assert_eq!(
        log[..until_return.len().min(log.len())],
        until_return,
        "allocations (+) and frees (-) of projections (P) and score matrices (S): got {}, expected {}",
        in_units(&log, &units),
        in_units(&until_return, &units)
    );
    // At return, in CPython's order of the frame's locals: the folded q, k, v, then the
    // probabilities.
    assert_eq!(
        log[until_return.len()..],
        [-p, -p, -p, -s],
        "frees at return: {}",
        in_units(&log, &units)
    );
}

/// A transformer block keeps what diffusers' `BasicTransformerBlock.forward` keeps, where each
/// rebinding frees the tensor it replaces: `norm_hidden_states` until the next norm is
/// computed, `attn_output` until the next attention returns, each residual sum until the next
/// one, and the last attention output, norm and feed-forward output until the block returns.
/// Only token-sized tensors (`[batch, tokens, channels]`) are followed; the attention
/// processor's own ones are pinned above.
#[test]
fn a_transformer_block_releases_its_tensors_as_diffusers_does() {
    use claimbench::ffi::cpu_allocation_log_of;
    use claimbench::models::unet_blocks::{
        BasicTransformerBlock, BlockState, ExtraAttention, ReferenceMode, TransformerConfig,
    };
    let _alone = alone();
    tch::manual_seed(0);
    let (batch, tokens, channels, context_tokens) = (2, 256, 512, 77);
    let mut b = Builder::new(Kind::Float, Device::Cpu);
    let block = BasicTransformerBlock::new(
        &mut b,
        "block",
        &TransformerConfig {
            channels,
            heads: 8,
            cross_attention_dim: 1024,
            upcast_attention: true,
            layer_norm_eps: 1e-5,
            norm: Norm {
                groups: 32,
                eps: 1e-6,
            },
            layers: 1,
            linear_projection: true,
            extra: ExtraAttention::NONE,
        },
    );
    let w = b.finish();
    let x = Tensor::randn([batch, tokens, channels], (Kind::Float, Device::Cpu));
    let context = Tensor::randn([batch, context_tokens, 1024], (Kind::Float, Device::Cpu));
    let run = || {
        let mut st = BlockState {
            context: &context,
            imp: AttentionImpl::Math,
            reference: ReferenceMode::Off,
            next_block: 0,
        };
        block.forward(&w, &x, 16, 16, &mut st)
    };
    let _ = run();
    let (_, log) = cpu_allocation_log_of(run).unwrap();
    let t = bytes(&x) as i64;
    let log: Vec<i64> = log.into_iter().filter(|n| n.abs() == t).collect();
    // Self-attention's processor, token-sized events only: q, k, v; three folds (copy, free);
    // the bmm output; unfold, to_out and the division (each allocates, then frees its input);
    // the folded q, k, v freed at return.
    let self_attention = [
        t, t, t, t, -t, t, -t, t, -t, t, t, -t, t, -t, t, -t, -t, -t, -t,
    ];
    // Cross-attention: only q and its fold are token-sized (k, v have the context's length).
    let cross_attention = [t, t, -t, t, t, -t, t, -t, t, -t, -t];
    let mut expected = vec![t]; // norm1
    expected.extend(self_attention);
    expected.extend([t]); // attn_output + hidden_states
    expected.extend([t, -t]); // norm2, then norm1 freed
    expected.extend(cross_attention);
    expected.extend([-t]); // attn1's output freed when attn2's is bound
    expected.extend([t, -t]); // the second residual sum, the first freed
    expected.extend([t, -t]); // norm3, then norm2 freed
    expected.extend([t]); // the feed-forward's output
    expected.extend([t, -t]); // the last residual sum, the second freed
    expected.extend([-t, -t, -t]); // at return: ff output, norm3, attn2's output
    assert_eq!(
        log,
        expected,
        "token-sized allocations (+T) and frees (-T): got {}, expected {}",
        in_units(&log, &[(t, "T")]),
        in_units(&expected, &[(t, "T")])
    );
}

/// UP2You's selector replaces each recorded entry in turn (`recorded[name] = select(...)`):
/// per view the gathered tokens, then their weighted product (the gather freed), the views
/// concatenated (each view's product freed), then the raw entry freed. With CFG a new dict
/// doubles each entry (`cat([zeros_like(v), v])`, the zeros freed), and the selected entries
/// are freed only once every entry is doubled; the UNet's `cross_attention_kwargs` then get a
/// copy of each. Only tensors of at least one view's selection are followed (the indices and
/// weights are smaller).
#[test]
fn up2you_selects_reference_tokens_in_its_selectors_order() {
    use claimbench::ffi::cpu_allocation_log_of;
    use claimbench::workloads::up2you::{kept_for_the_loop, select_reference_tokens};
    let _alone = alone();
    // Installs the counter first: the recorded entries' frees are part of the sequence.
    cpu_allocation_log_of(|| ()).unwrap();
    let (entries, views, images, hw, c) = (2, 3, 2, 16, 8);
    let recorded = || -> Vec<Tensor> {
        (0..entries)
            .map(|_| Tensor::randn([1, images * hw, c], (Kind::Float, Device::Cpu)))
            .collect()
    };
    let _ = kept_for_the_loop(select_reference_tokens(
        recorded(),
        1.0,
        views,
        images,
        true,
    ));
    let inputs = recorded();
    let (_kept, log) = cpu_allocation_log_of(move || {
        kept_for_the_loop(select_reference_tokens(inputs, 1.0, views, images, true))
    })
    .unwrap();
    let g = 4 * hw * c; // one view's selection: k = ratio·HW tokens
    let raw = 4 * images * hw * c;
    let (selected, doubled) = (views * g, 2 * views * g);
    let log: Vec<i64> = log.into_iter().filter(|n| n.abs() >= g).collect();
    let mut expected = Vec::new();
    for _ in 0..entries {
        for _ in 0..views {
            expected.extend([g, g, -g]); // gather, weighted product, gather freed
        }
        expected.push(selected); // the views concatenated
        expected.extend(std::iter::repeat_n(-g, views as usize)); // each view's product freed
        expected.push(-raw); // the recorded entry replaced
    }
    for _ in 0..entries {
        expected.extend([selected, doubled, -selected]); // zeros, cat, zeros freed
    }
    expected.extend(std::iter::repeat_n(-selected, entries as usize)); // the old dict freed
    expected.extend(std::iter::repeat_n(doubled, entries as usize)); // the kwargs' copies
    let units = [(g, "G"), (raw, "R"), (selected, "S"), (doubled, "D")];
    assert_sequence(&log, &expected, &units);
}

/// SD 2.1's configuration of the same processor: fp16 with `upcast_attention`. The upcast q
/// and k (fp32 copies of the folded ones) are made before `baddbmm`'s empty input and freed
/// when `get_attention_scores` returns, after the fp32 probabilities are cast back to fp16
/// and freed. Only tensors of the model's sizes are followed (the CPU's fp16 matmuls allocate
/// fp32 workspaces of other sizes).
#[test]
fn upcast_math_attention_allocates_in_diffusers_order_in_fp16() {
    let _alone = alone();
    let (batch, tokens, heads) = (2, 320, 8);
    let (x, _, _, log) = logged_self_attention(Kind::Half, batch, tokens, heads);
    let p = bytes(&x) as i64; // a projection, fp16
    let s = batch * heads * tokens * tokens * 4; // fp32 scores
    let sizes = [p, 2 * p, s, s / 2];
    let log: Vec<i64> = log
        .into_iter()
        .filter(|n| sizes.contains(&n.abs()))
        .collect();
    #[rustfmt::skip]
    let expected = [
        p, p, p, p, -p, p, -p, p, -p, // projections and folds
        2 * p, 2 * p,                 // query.float(), key.float()
        s, s, -s,                     // baddbmm's empty input, the scores, the input freed
        s, -s,                        // softmax, the scores freed
        s / 2, -s,                    // cast to fp16, the fp32 probabilities freed
        -2 * p, -2 * p,               // the upcast query and key freed at return
        p, p, -p, p, -p, p, -p,       // bmm, unfold, to_out, division
        -p, -p, -p, -s / 2,           // at return: folded q, k, v, probabilities
    ];
    let units = [(p, "P"), (2 * p, "Q"), (s, "S"), (s / 2, "H")];
    assert_sequence(&log, &expected, &units);
}
