//! Helpers shared by the models' unit tests.

use super::weights::{Builder, Residency, Weights};
use tch::{Device, Kind, Tensor};

/// Parameters that `build` creates, counted without allocating them.
pub fn count<T>(build: impl FnOnce(&mut Builder) -> T) -> i64 {
    let mut b = Builder::counting();
    let _ = build(&mut b);
    b.finish().numel()
}

/// `count` is within 1 % of `target` (the precision of published parameter counts).
pub fn within(count: i64, target: f64) -> bool {
    within_by(count, target, 0.01)
}

/// `count` is within `tolerance` (a fraction) of `target`.
pub fn within_by(count: i64, target: f64, tolerance: f64) -> bool {
    (count as f64 - target).abs() <= tolerance * target
}

/// Largest absolute elementwise difference.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// fp32 on the CPU: the options of every tiny-model test tensor.
pub fn opts() -> (Kind, Device) {
    (Kind::Float, Device::Cpu)
}

/// Offloading `w` (sequentially, then whole to the CPU) leaves `run`'s output bit for bit equal
/// to `reference`, computed with resident weights.
pub fn assert_offload_transparent(
    w: &mut Weights,
    run: impl Fn(&Weights) -> Tensor,
    reference: &Tensor,
) {
    w.offload_sequential(Device::Cpu);
    assert_eq!(w.residency(), Residency::Sequential);
    assert!(run(w).equal(reference), "sequential offload");
    w.move_to(Device::Cpu);
    assert!(run(w).equal(reference), "whole-model offload");
}

/// No NaN or infinity in `t`.
pub fn finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}
