//! VAE tests: parameter counts, shapes, and sliced/tiled decoding against plain decoding.

use super::*;
use crate::models::test_util::{max_diff, opts};
use crate::models::weights::Residency;
use tch::Device;

fn tiny(seed: i64) -> AutoencoderKL {
    tch::manual_seed(seed);
    AutoencoderKL::new(&VaeConfig::tiny(), Builder::new(Kind::Float, Device::Cpu))
}

#[test]
fn parameter_counts_are_exact() {
    let sd = AutoencoderKL::parameter_count(&VaeConfig::sd());
    assert_eq!(sd.decoder, 49_490_199);
    assert_eq!(sd.encoder, 34_163_664);
    // Flux: conv_in 16 → 512 instead of 4 → 512 and conv_out 512 → 32 instead of
    // 512 → 8, without the 1×1 quant convs (20 and 72 parameters).
    let flux = AutoencoderKL::parameter_count(&VaeConfig::flux16());
    assert_eq!(flux.decoder, 49_490_199 - 20 + 12 * 512 * 9);
    assert_eq!(flux.encoder, 34_163_664 - 72 + 24 * 512 * 9 + 24);
}

#[test]
fn tiny_shapes() {
    let vae = tiny(0);
    let o = VaeOptions::default();
    let z = Tensor::randn([2, 4, 5, 7], opts());
    assert_eq!(vae.decode(&z, &o).size(), vec![2, 3, 40, 56]);
    let x = Tensor::randn([2, 3, 40, 56], opts());
    let moments = vae.encode(&x, &o);
    assert_eq!(moments.size(), vec![2, 8, 5, 7]);
    assert_eq!(vae.latents(&moments).size(), vec![2, 4, 5, 7]);
    let flux = AutoencoderKL::new(
        &VaeConfig {
            latent_channels: 16,
            quant_conv: false,
            ..VaeConfig::tiny()
        },
        Builder::new(Kind::Float, Device::Cpu),
    );
    let z = Tensor::randn([1, 16, 4, 4], opts());
    assert_eq!(flux.decode(&z, &o).size(), vec![1, 3, 32, 32]);
}

#[test]
fn sliced_equals_plain() {
    let vae = tiny(1);
    let z = Tensor::randn([3, 4, 6, 6], opts());
    let plain = vae.decode(&z, &VaeOptions::default());
    let sliced_opts = VaeOptions {
        slicing: true,
        ..Default::default()
    };
    let sliced = vae.decode(&z, &sliced_opts);
    // GroupNorm and attention are per image: the only difference is kernel blocking.
    assert!(max_diff(&plain, &sliced) < 1e-5);
    assert_eq!(vae.decoder_calls(3, 6, 6, &sliced_opts), 3);
    let x = Tensor::randn([3, 3, 24, 24], opts());
    let e = max_diff(
        &vae.encode(&x, &VaeOptions::default()),
        &vae.encode(&x, &sliced_opts),
    );
    assert!(e < 1e-5);
}

/// A literal port of diffusers' tile loop, with `blend_v`/`blend_h` writing row by row in
/// place into the decoded tiles.
fn diffusers_tiled_decode(vae: &AutoencoderKL, z: &Tensor, o: &VaeOptions) -> Tensor {
    let g = vae.decode_tiles(o);
    let (_, _, h, w) = z.size4().unwrap();
    let mut rows: Vec<Vec<Tensor>> = Vec::new();
    let mut i = 0;
    while i < h {
        let mut row = Vec::new();
        let mut j = 0;
        while j < w {
            let tile = z
                .narrow(2, i, g.tile.min(h - i))
                .narrow(3, j, g.tile.min(w - j));
            row.push(vae.decoder.forward(&vae.weights, &tile, o.attention));
            j += g.stride;
        }
        rows.push(row);
        i += g.stride;
    }
    let blend_in_place = |a: &Tensor, b: &Tensor, dim: i64| {
        let (la, lb) = (a.size()[dim as usize], b.size()[dim as usize]);
        let e = g.blend.min(la).min(lb);
        for y in 0..e {
            let t = y as f64 / e as f64;
            let v = a.narrow(dim, la - e + y, 1) * (1.0 - t) + b.narrow(dim, y, 1) * t;
            b.narrow(dim, y, 1).copy_(&v);
        }
    };
    let mut result_rows = Vec::new();
    for i in 0..rows.len() {
        let mut result_row = Vec::new();
        for j in 0..rows[i].len() {
            if i > 0 {
                blend_in_place(&rows[i - 1][j], &rows[i][j], 2);
            }
            if j > 0 {
                blend_in_place(&rows[i][j - 1], &rows[i][j], 3);
            }
            let t = &rows[i][j];
            result_row.push(t.narrow(2, 0, g.row_limit.min(t.size()[2])).narrow(
                3,
                0,
                g.row_limit.min(t.size()[3]),
            ));
        }
        result_rows.push(Tensor::cat(&result_row, 3));
    }
    Tensor::cat(&result_rows, 2)
}

#[test]
fn tiled_decode_follows_diffusers() {
    let vae = tiny(2);
    // 64-px tiles: 8 latent pixels, stride 6, blend 16 px, keep 48 px per tile. A 17 × 13
    // latent gives 3 × 3 tiles of uneven sizes (8, 8, 5 rows; 8, 8, 1 columns).
    let o = VaeOptions {
        tiling: true,
        ..Default::default()
    };
    let g = vae.decode_tiles(&o);
    assert_eq!(
        g,
        TileGeometry {
            tile: 8,
            stride: 6,
            blend: 16,
            row_limit: 48
        }
    );
    let z = Tensor::randn([1, 4, 17, 13], opts());
    assert_eq!(vae.decoder_calls(1, 17, 13, &o), 9);
    let ours = vae.decode(&z, &o);
    assert_eq!(ours.size(), vec![1, 3, 136, 104]);
    let theirs = diffusers_tiled_decode(&vae, &z, &o);
    // Same decoder calls; only the blend weights are rounded differently (fp32 ramp vs
    // Python floats): a few ulps of the output.
    let scale = theirs.abs().max().double_value(&[]);
    assert!(max_diff(&ours, &theirs) <= 1e-6 * scale.max(1.0));
    // Not tiled below one tile, tiled with slicing per image.
    assert_eq!(vae.decoder_calls(2, 8, 8, &o), 1);
    let both = VaeOptions { slicing: true, ..o };
    assert_eq!(vae.decoder_calls(2, 17, 13, &both), 18);
}

/// With a per-pixel "decoder" (×8 nearest upsampling and a 1×1 mix, no context beyond
/// the pixel), overlapping tiles agree wherever they overlap, so tiling must reproduce
/// the untiled result at every seam: blending `v·(1 − t) + v·t` is `v` up to one rounding
/// per operation (tolerance 1e-6 relative in fp32). This checks the tile origins, blend
/// regions, crops and concatenation independently of the network.
#[test]
fn tiling_is_seamless_for_a_local_map() {
    let mix = Tensor::randn([3, 4, 1, 1], opts());
    let f = |t: &Tensor| {
        let (_, _, h, w) = t.size4().unwrap();
        t.upsample_nearest2d([8 * h, 8 * w], None, None).conv2d(
            &mix,
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
    };
    let z = Tensor::randn([2, 4, 29, 22], opts());
    let plain = f(&z);
    for tile in [8, 12, 16] {
        let g = TileGeometry {
            tile,
            stride: (tile as f64 * 0.75) as i64,
            blend: (8.0 * tile as f64 * 0.25) as i64,
            row_limit: 8 * tile - (8.0 * tile as f64 * 0.25) as i64,
        };
        let t = tiled(&z, g, f);
        assert_eq!(t.size(), plain.size());
        let scale = plain.abs().max().double_value(&[]);
        assert!(max_diff(&t, &plain) <= 1e-6 * scale, "tile {tile}");
    }
    // The same through encode's geometry (pixels in, 1/8 out): average pooling is local too.
    let down = |t: &Tensor| t.avg_pool2d([8, 8], [8, 8], [0, 0], false, true, None::<i64>);
    let x = Tensor::randn([1, 3, 200, 136], opts());
    let g = TileGeometry {
        tile: 64,
        stride: 48,
        blend: 2,
        row_limit: 6,
    };
    let t = tiled(&x, g, down);
    assert!(max_diff(&t, &down(&x)) <= 1e-6 * 4.0);
}

/// With the real (tiny) decoder, tiles differ from the whole image: each tile has its own
/// conv zero padding, GroupNorm statistics and mid-block attention, in diffusers as here.
/// So the comparison is statistical: the tiled image keeps the plain image's shape and its
/// relative RMS difference from it stays below 0.8 (about 0.5 here), where two unrelated
/// outputs of the same variance would differ by √2 ≈ 1.41: tiles decode the content at
/// their own place. The exact checks are [`tiled_decode_follows_diffusers`] and
/// [`tiling_is_seamless_for_a_local_map`].
#[test]
fn tiled_encode_and_decode_stay_close_to_plain() {
    let vae = tiny(3);
    let o = VaeOptions {
        tiling: true,
        ..Default::default()
    };
    let z = Tensor::randn([1, 4, 17, 13], opts());
    let plain = vae.decode(&z, &VaeOptions::default());
    let tiled = vae.decode(&z, &o);
    assert_eq!(tiled.size(), plain.size());
    let rel = |a: &Tensor, b: &Tensor| {
        ((a - b).square().mean(Kind::Float) / b.square().mean(Kind::Float))
            .sqrt()
            .double_value(&[])
    };
    let d = rel(&tiled, &plain);
    assert!(d < 0.8, "decode: relative RMS difference {d}");
    let x = Tensor::randn([1, 3, 104, 72], opts());
    let plain = vae.encode(&x, &VaeOptions::default());
    let tiled = vae.encode(&x, &o);
    assert_eq!(tiled.size(), plain.size());
    let d = rel(&tiled, &plain);
    assert!(d < 0.8, "encode: relative RMS difference {d}");
}

#[test]
fn offloaded_equals_resident() {
    let mut vae = tiny(4);
    let z = Tensor::randn([1, 4, 6, 6], opts());
    let o = VaeOptions::default();
    let resident = vae.decode(&z, &o);
    vae.weights.move_to(Device::Cpu);
    assert!(vae.decode(&z, &o).equal(&resident));
    vae.weights.offload_sequential(Device::Cpu);
    assert_eq!(vae.weights.residency(), Residency::Sequential);
    assert_eq!(vae.weights.storage_device(), Device::Cpu);
    assert!(vae.decode(&z, &o).equal(&resident));
}
