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
