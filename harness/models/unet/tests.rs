//! UNet tests: parameter counts, shapes, the extra attentions, offload and slicing.

use super::*;
use crate::models::attention::SliceSize;
use crate::models::test_util::{max_diff, opts};
use crate::models::weights::Residency;

const SD21_PARAMS: i64 = 865_910_724;

fn tiny_model(config: &UNetConfig, seed: i64) -> UNet2DConditionModel {
    tch::manual_seed(seed);
    UNet2DConditionModel::new(config, Builder::new(Kind::Float, Device::Cpu))
}

struct Inputs {
    sample: Tensor,
    t: Tensor,
    ctx: Tensor,
    labels: Tensor,
}

fn inputs(config: &UNetConfig, batch: i64, h: i64, w: i64) -> Inputs {
    tch::manual_seed(100);
    Inputs {
        sample: Tensor::randn([batch, config.in_channels, h, w], opts()),
        t: Tensor::from_slice(&[500i64]),
        ctx: Tensor::randn([batch, 7, config.cross_attention_dim], opts()),
        labels: Tensor::arange(batch, (Kind::Int64, Device::Cpu)),
    }
}

impl Inputs {
    fn copy(&self) -> Inputs {
        Inputs {
            sample: self.sample.copy(),
            t: self.t.copy(),
            ctx: self.ctx.copy(),
            labels: self.labels.copy(),
        }
    }

    fn unet<'a>(&'a self, reference: Option<&'a ReferenceTokens>) -> UNetInput<'a> {
        UNetInput {
            sample: &self.sample,
            timesteps: &self.t,
            encoder_hidden_states: &self.ctx,
            class_labels: Some(&self.labels),
            reference,
            down_residuals: None,
        }
    }
}

#[test]
fn sd21_parameter_count_is_exact() {
    assert_eq!(
        UNet2DConditionModel::parameter_count(&UNetConfig::sd21()),
        SD21_PARAMS
    );
}

#[test]
fn variant_parameter_counts() {
    // 8 extra input channels of a 3×3 conv into 320 channels.
    let delight = UNet2DConditionModel::parameter_count(&UNetConfig::delight());
    assert_eq!(delight, SD21_PARAMS + 4 * 320 * 9);
    assert_eq!(delight, 865_922_244);

    // Two attentions of 4·C² + C (q/k/v/out, output bias) in each of the 16 blocks:
    // 5 at 320 channels, 5 at 640, 6 at 1280 (incl. the mid block).
    let per = |c: i64| 2 * (4 * c * c + c);
    let extra = 5 * per(320) + 5 * per(640) + 6 * per(1280);
    assert_eq!(extra, 99_148_160);
    // Plus the learned prompt embeddings, 2 × 77 × 1024: 965,302,340 as hy3dgen's
    // `UNet2p5DConditionModel.unet` counts.
    let paint = UNet2DConditionModel::parameter_count(&UNetConfig::hunyuan_paint());
    let expected = SD21_PARAMS + 8 * 320 * 9 + 49 * 1280 + extra + 2 * 77 * 1024;
    assert_eq!(paint, expected);
    assert_eq!(paint, 965_302_340);

    let up2you = UNet2DConditionModel::parameter_count(&UNetConfig::up2you());
    assert_eq!(up2you, SD21_PARAMS + extra);
}

#[test]
fn tiny_shapes_with_odd_latents() {
    let config = UNetConfig::tiny();
    let model = tiny_model(&config, 0);
    assert_eq!(model.block_sites().len(), 2 + 1 + 3);
    for (h, w) in [(8, 8), (7, 5), (1, 1)] {
        let x = inputs(&config, 2, h, w);
        let out = model.forward(&x.unet(None), AttentionImpl::Sdpa);
        assert_eq!(out.size(), vec![2, 4, h, w]);
        assert!(bool::try_from(out.isfinite().all()).unwrap());
    }
    for in_ch in [8, 12] {
        let config = UNetConfig::tiny().with_in_channels(in_ch);
        let x = inputs(&config, 1, 8, 8);
        let out = tiny_model(&config, 0).forward(&x.unet(None), AttentionImpl::Sdpa);
        assert_eq!(out.size(), vec![1, 4, 8, 8]);
    }
}

#[test]
fn math_and_sliced_attention_equal_sdpa() {
    let config = UNetConfig {
        class_embeddings: Some(49),
        extra: ExtraAttention {
            multiview: Multiview::RowWise,
            views: 2,
            reference: Some(ReferenceSelect::All),
        },
        ..UNetConfig::tiny()
    };
    let model = tiny_model(&config, 1);
    let x = inputs(&config, 4, 8, 8);
    let refs = model.synthetic_reference(2, 1, 8, 8, Kind::Float, Device::Cpu);
    let reference = model.forward(&x.unet(Some(&refs)), AttentionImpl::Sdpa);
    let scale = reference.abs().max().double_value(&[]);
    for imp in [
        AttentionImpl::Math,
        AttentionImpl::Sliced(SliceSize::Auto),
        AttentionImpl::Sliced(SliceSize::Max),
        AttentionImpl::Sliced(SliceSize::Fixed(3)),
    ] {
        let out = model.forward(&x.unet(Some(&refs)), imp);
        let err = max_diff(&out, &reference);
        // fp32 through ~40 layers: a few ulps per op, relative to the output's scale.
        assert!(err <= 1e-4 * scale.max(1.0), "{imp}: {err} (scale {scale})");
    }
}

#[test]
fn extra_attentions_change_the_output_and_reference_modes_work() {
    let (views, groups, ref_images) = (3, 2, 2);
    for extra in [
        ExtraAttention {
            multiview: Multiview::Full,
            views,
            reference: Some(ReferenceSelect::All),
        },
        ExtraAttention {
            multiview: Multiview::RowWise,
            views,
            reference: Some(ReferenceSelect::PerView { ratio: 2.0 }),
        },
    ] {
        let config = UNetConfig {
            extra,
            class_embeddings: Some(49),
            ..UNetConfig::tiny().with_in_channels(12)
        };
        let model = tiny_model(&config, 2);
        let x = inputs(&config, groups * views, 8, 6);
        // A plain reference UNet records tokens from `ref_images` images per group.
        let ref_config = UNetConfig::tiny();
        let ref_model = tiny_model(&ref_config, 3);
        let rx = inputs(&ref_config, groups * ref_images, 8, 6);
        let (_, recorded) = ref_model.forward_recording(
            &UNetInput {
                class_labels: None,
                ..rx.unet(None)
            },
            AttentionImpl::Sdpa,
            ref_images,
            false,
        );
        assert_eq!(recorded.layers.len(), model.block_sites().len());
        let synthetic =
            model.synthetic_reference(groups, ref_images, 8, 6, Kind::Float, Device::Cpu);
        for (r, s) in recorded.layers.iter().zip(&synthetic.layers) {
            assert_eq!(r.size(), s.size());
        }
        let with_ref = model.forward(&x.unet(Some(&recorded)), AttentionImpl::Sdpa);
        let without = model.forward(&x.unet(None), AttentionImpl::Sdpa);
        assert_eq!(with_ref.size(), vec![groups * views, 4, 8, 6]);
        assert!(max_diff(&with_ref, &without) > 1e-4, "{extra:?}");
        // Views of a group interact: changing view 0 changes view 1's output.
        // A copy of the same inputs, not a second draw: tests run in parallel and share
        // libtorch's global generator, so a second seeded draw can differ.
        let other = x.copy();
        let _ = other.sample.get(0).fill_(0.0);
        let changed = model.forward(&other.unet(None), AttentionImpl::Sdpa);
        assert!(
            max_diff(&changed.get(1), &without.get(1)) > 1e-5,
            "{extra:?}"
        );
        // ... but not the other group's.
        assert!(
            max_diff(&changed.get(views), &without.get(views)) < 1e-5,
            "{extra:?}"
        );
    }
}

#[test]
fn offloaded_equals_resident() {
    let config = UNetConfig::tiny();
    let mut model = tiny_model(&config, 4);
    let x = inputs(&config, 2, 8, 8);
    let resident = model.forward(&x.unet(None), AttentionImpl::Sdpa);

    model.weights.move_to(Device::Cpu);
    assert_eq!(model.weights.residency(), Residency::Resident);
    let moved = model.forward(&x.unet(None), AttentionImpl::Sdpa);
    assert!(moved.equal(&resident));

    model.weights.offload_sequential(Device::Cpu);
    assert_eq!(model.weights.residency(), Residency::Sequential);
    assert_eq!(model.weights.storage_device(), Device::Cpu);
    let sequential = model.forward(&x.unet(None), AttentionImpl::Sdpa);
    assert!(sequential.equal(&resident));
    assert_eq!(model.weights.storage_device(), Device::Cpu);
}

#[test]
fn adapter_residuals_enter_each_level_before_its_downsampler() {
    let config = UNetConfig::tiny();
    let model = tiny_model(&config, 3);
    let x = inputs(&config, 2, 8, 8);
    let plain = model.forward(&x.unet(None), AttentionImpl::Sdpa);
    let zeros = [
        Tensor::zeros([2, 32, 8, 8], opts()),
        Tensor::zeros([2, 64, 4, 4], opts()),
    ];
    let with = |residuals: &[Tensor]| {
        let input = UNetInput {
            down_residuals: Some(residuals),
            ..x.unet(None)
        };
        model.forward(&input, AttentionImpl::Sdpa)
    };
    assert!(with(&zeros).equal(&plain), "zero features change nothing");
    let ones = [
        Tensor::zeros([2, 32, 8, 8], opts()),
        Tensor::ones([2, 64, 4, 4], opts()),
    ];
    assert!(
        max_diff(&with(&ones), &plain) > 1e-3,
        "the last level's feature acts"
    );
    let learned = tiny_model(
        &UNetConfig {
            learned_text: true,
            ..config
        },
        3,
    );
    let (gen, reference) = learned.learned_text().expect("configured");
    assert_eq!(gen.size(), vec![1, 77, 32]);
    assert_eq!(reference.size(), vec![1, 77, 32]);
    assert!(model.learned_text().is_none());
}

#[test]
fn a_recording_pass_of_a_multiview_unet_skips_the_multiview_branch() {
    // UP2You records its reference tokens with its own UNet (`use_mv=False`): 2 reference
    // images are not a multiple of 3 views, which the multiview branch would refuse.
    let config = UNetConfig {
        extra: ExtraAttention {
            multiview: Multiview::RowWise,
            views: 3,
            reference: Some(ReferenceSelect::PerView { ratio: 2.0 }),
        },
        ..UNetConfig::tiny()
    };
    let model = tiny_model(&config, 4);
    let x = inputs(&config, 2, 8, 8);
    let input = UNetInput {
        class_labels: None,
        ..x.unet(None)
    };
    let (out, recorded) = model.forward_recording(&input, AttentionImpl::Sdpa, 2, false);
    assert_eq!(recorded.layers.len(), model.block_sites().len());
    assert_eq!(out.size(), vec![2, 4, 8, 8]);
    assert!(crate::models::test_util::finite(&out));
    // UP2You's processors record the inputs of both attentions of every block, as copies.
    let (again, every) = model.forward_recording(&input, AttentionImpl::Sdpa, 2, true);
    assert_eq!(every.layers.len(), 2 * model.block_sites().len());
    assert!(again.allclose(&out, 1e-5, 1e-6, false));
    for (norm1, entries) in recorded.layers.iter().zip(every.layers.chunks(2)) {
        assert!(
            entries[0].allclose(norm1, 0.0, 0.0, false),
            "attn1's input first"
        );
        assert_eq!(
            entries[1].size(),
            norm1.size(),
            "attn2's input: the same tokens"
        );
    }
}
