//! Safe wrappers over the C++ shim (`shim.cpp`) for what tch does not expose: cuDNN, determinism
//! and TF32 flags, autocast, caching-allocator statistics, memory fraction, versions and CUDA events.

use crate::knobs::Autocast;
use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::ptr::NonNull;

mod sys {
    use super::*;

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct BackendFlags {
        pub cudnn_enabled: c_int,
        pub cudnn_benchmark: c_int,
        pub cudnn_deterministic: c_int,
        pub deterministic_algorithms: c_int,
        pub deterministic_warn_only: c_int,
        pub tf32_matmul: c_int,
        pub tf32_cudnn: c_int,
        pub autocast_cpu: c_int,
        pub autocast_cuda: c_int,
    }

    #[repr(C)]
    #[derive(Debug, Default, Clone, Copy)]
    pub struct MemoryStats {
        pub allocated_current: i64,
        pub allocated_peak: i64,
        pub reserved_current: i64,
        pub reserved_peak: i64,
        pub active_peak: i64,
        pub requested_peak: i64,
        pub num_alloc_retries: i64,
        pub num_ooms: i64,
    }

    extern "C" {
        pub fn cb_last_error() -> *const c_char;
        pub fn cb_set_backend_flags(flags: *const BackendFlags) -> c_int;
        pub fn cb_get_backend_flags(out: *mut BackendFlags) -> c_int;
        pub fn cb_cuda_device_count(out: *mut c_int) -> c_int;
        pub fn cb_memory_stats_get(device: c_int, out: *mut MemoryStats) -> c_int;
        pub fn cb_reset_peak_stats(device: c_int) -> c_int;
        pub fn cb_empty_cache() -> c_int;
        pub fn cb_memory_info(device: c_int, free: *mut u64, total: *mut u64) -> c_int;
        pub fn cb_set_memory_fraction(fraction: f64, device: c_int) -> c_int;
        pub fn cb_get_memory_fraction(device: c_int, out: *mut f64) -> c_int;
        pub fn cb_cuda_memory_history(max_entries: usize) -> c_int;
        pub fn cb_cuda_memory_trace_write(path: *const c_char) -> c_int;
        pub fn cb_versions(
            cudnn: *mut c_long,
            cudart: *mut c_long,
            torch: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn cb_cpu_memory_track() -> c_int;
        pub fn cb_cpu_memory_stats(current: *mut i64, peak: *mut i64) -> c_int;
        pub fn cb_cpu_memory_reset_peak() -> c_int;
        pub fn cb_cpu_memory_log(on: c_int) -> c_int;
        pub fn cb_cpu_memory_log_read(out: *mut i64, capacity: usize, len: *mut usize) -> c_int;
        pub fn cb_event_create(out: *mut *mut c_void) -> c_int;
        pub fn cb_event_record(event: *mut c_void, device: c_int) -> c_int;
        pub fn cb_event_synchronize(event: *mut c_void) -> c_int;
        pub fn cb_event_elapsed_ms(start: *mut c_void, end: *mut c_void, out: *mut f64) -> c_int;
        pub fn cb_event_destroy(event: *mut c_void);
    }
}

/// An error raised inside libtorch, with its message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("libtorch: {0}")]
pub struct ShimError(pub String);

fn check(rc: c_int) -> Result<(), ShimError> {
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: cb_last_error returns a NUL-terminated thread-local string.
        let msg = unsafe { CStr::from_ptr(sys::cb_last_error()) };
        Err(ShimError(msg.to_string_lossy().into_owned()))
    }
}

/// Global backend flags, as `torch.backends.*` and `torch.use_deterministic_algorithms` set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendFlags {
    pub cudnn_enabled: bool,
    pub cudnn_benchmark: bool,
    pub cudnn_deterministic: bool,
    pub deterministic_algorithms: bool,
    pub deterministic_warn_only: bool,
    pub tf32_matmul: bool,
    pub tf32_cudnn: bool,
    /// `torch.autocast("cpu", dtype)` in force on the calling thread; written only when on, so
    /// records of runs without autocast keep their format-1.0 shape.
    #[serde(default, skip_serializing_if = "Autocast::is_off")]
    pub autocast_cpu: Autocast,
    /// `torch.autocast("cuda", dtype)` in force on the calling thread; written only when on.
    #[serde(default, skip_serializing_if = "Autocast::is_off")]
    pub autocast_cuda: Autocast,
}

/// The shim's autocast code: 0 off, 1 fp16, 2 bf16.
fn autocast_code(mode: Autocast) -> c_int {
    match mode {
        Autocast::Off => 0,
        Autocast::Fp16 => 1,
        Autocast::Bf16 => 2,
    }
}

fn autocast_mode(code: c_int) -> Result<Autocast, ShimError> {
    match code {
        0 => Ok(Autocast::Off),
        1 => Ok(Autocast::Fp16),
        2 => Ok(Autocast::Bf16),
        _ => Err(ShimError(
            "autocast is on with a dtype other than fp16 or bf16".into(),
        )),
    }
}

pub fn set_backend_flags(flags: &BackendFlags) -> Result<(), ShimError> {
    let raw = sys::BackendFlags {
        cudnn_enabled: flags.cudnn_enabled.into(),
        cudnn_benchmark: flags.cudnn_benchmark.into(),
        cudnn_deterministic: flags.cudnn_deterministic.into(),
        deterministic_algorithms: flags.deterministic_algorithms.into(),
        deterministic_warn_only: flags.deterministic_warn_only.into(),
        tf32_matmul: flags.tf32_matmul.into(),
        tf32_cudnn: flags.tf32_cudnn.into(),
        autocast_cpu: autocast_code(flags.autocast_cpu),
        autocast_cuda: autocast_code(flags.autocast_cuda),
    };
    // SAFETY: raw outlives the call; the shim only reads it.
    check(unsafe { sys::cb_set_backend_flags(&raw) })
}

/// Reads the flags back from libtorch, so a record states what was in force, not what was asked.
pub fn backend_flags() -> Result<BackendFlags, ShimError> {
    let mut raw = sys::BackendFlags::default();
    // SAFETY: raw is a valid out-pointer for the duration of the call.
    check(unsafe { sys::cb_get_backend_flags(&mut raw) })?;
    Ok(BackendFlags {
        cudnn_enabled: raw.cudnn_enabled != 0,
        cudnn_benchmark: raw.cudnn_benchmark != 0,
        cudnn_deterministic: raw.cudnn_deterministic != 0,
        deterministic_algorithms: raw.deterministic_algorithms != 0,
        deterministic_warn_only: raw.deterministic_warn_only != 0,
        tf32_matmul: raw.tf32_matmul != 0,
        tf32_cudnn: raw.tf32_cudnn != 0,
        autocast_cpu: autocast_mode(raw.autocast_cpu)?,
        autocast_cuda: autocast_mode(raw.autocast_cuda)?,
    })
}

/// Runs `f` under `torch.autocast(device_type, dtype)` of `mode` on `device`'s type, on the
/// calling thread, as a `with torch.autocast(...)` block around part of a pipeline does; the
/// autocast state in force before comes back afterwards, also when `f` panics. The other
/// backend flags are left as they are.
pub fn with_autocast<T>(
    device: tch::Device,
    mode: Autocast,
    f: impl FnOnce() -> T,
) -> Result<T, ShimError> {
    fn set_autocast(cpu: Autocast, cuda: Autocast) -> Result<(), ShimError> {
        set_backend_flags(&BackendFlags {
            autocast_cpu: cpu,
            autocast_cuda: cuda,
            ..backend_flags()?
        })
    }
    struct Restore(Autocast, Autocast);
    impl Drop for Restore {
        fn drop(&mut self) {
            // Flags just read from libtorch are written back as they were.
            let _ = set_autocast(self.0, self.1);
        }
    }
    let before = backend_flags()?;
    let (cpu, cuda) = (before.autocast_cpu, before.autocast_cuda);
    if device.is_cuda() {
        set_autocast(cpu, mode)?;
    } else {
        set_autocast(mode, cuda)?;
    }
    let _restore = Restore(cpu, cuda);
    Ok(f())
}

/// CUDA devices libtorch can use (0 without CUDA).
pub fn cuda_device_count() -> Result<usize, ShimError> {
    let mut n: c_int = 0;
    // SAFETY: n is a valid out-pointer.
    check(unsafe { sys::cb_cuda_device_count(&mut n) })?;
    Ok(n.max(0) as usize)
}

/// Byte counters of the CUDA caching allocator (`torch.cuda.memory_stats()`, aggregate pool).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryStats {
    pub allocated_current_bytes: u64,
    pub allocated_peak_bytes: u64,
    pub reserved_current_bytes: u64,
    pub reserved_peak_bytes: u64,
    pub active_peak_bytes: u64,
    pub requested_peak_bytes: u64,
    pub num_alloc_retries: u64,
    pub num_ooms: u64,
}

pub fn memory_stats(device: usize) -> Result<MemoryStats, ShimError> {
    let mut raw = sys::MemoryStats::default();
    // SAFETY: raw is a valid out-pointer.
    check(unsafe { sys::cb_memory_stats_get(device as c_int, &mut raw) })?;
    let u = |v: i64| v.max(0) as u64;
    Ok(MemoryStats {
        allocated_current_bytes: u(raw.allocated_current),
        allocated_peak_bytes: u(raw.allocated_peak),
        reserved_current_bytes: u(raw.reserved_current),
        reserved_peak_bytes: u(raw.reserved_peak),
        active_peak_bytes: u(raw.active_peak),
        requested_peak_bytes: u(raw.requested_peak),
        num_alloc_retries: u(raw.num_alloc_retries),
        num_ooms: u(raw.num_ooms),
    })
}

/// `torch.cuda.reset_peak_memory_stats(device)`.
pub fn reset_peak_stats(device: usize) -> Result<(), ShimError> {
    // SAFETY: plain call.
    check(unsafe { sys::cb_reset_peak_stats(device as c_int) })
}

/// `torch.cuda.empty_cache()`.
pub fn empty_cache() -> Result<(), ShimError> {
    // SAFETY: plain call.
    check(unsafe { sys::cb_empty_cache() })
}

thread_local! {
    static CACHED_BLOCK_RETURNS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Returns the caching allocator's unused blocks to `device`, as accelerate's
/// `clear_device_cache` does where the replicas model it: `empty_cache` on CUDA; the CPU has no
/// cache, so there it only counts. Every request is counted per thread
/// ([`cached_block_returns`]), so CPU tests can check where a replica makes one.
pub fn return_cached_blocks(device: tch::Device) -> Result<(), ShimError> {
    CACHED_BLOCK_RETURNS.with(|n| n.set(n.get() + 1));
    if device.is_cuda() {
        empty_cache()
    } else {
        Ok(())
    }
}

/// How many times this thread has called [`return_cached_blocks`].
pub fn cached_block_returns() -> u64 {
    CACHED_BLOCK_RETURNS.with(|n| n.get())
}

/// Starts recording the CUDA caching allocator's trace (`torch.cuda.memory._record_memory_history`
/// without stacks), keeping the last `max_entries` events; 0 stops recording and clears it.
pub fn cuda_memory_history(max_entries: usize) -> Result<(), ShimError> {
    // SAFETY: plain call.
    check(unsafe { sys::cb_cuda_memory_history(max_entries) })
}

/// Writes the recorded allocator trace to `path` as CSV: `action,address,bytes,stream`, one row
/// per event in order (`alloc`, `free_completed`, `segment_alloc`, `segment_free`, ...), then
/// a `trace_end` row (bytes: the number of segments held) and a `segment_at_end` row per
/// segment held at the end.
pub fn write_cuda_memory_trace(path: &std::path::Path) -> Result<(), ShimError> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| ShimError("a trace path with a NUL byte".into()))?;
    // SAFETY: a valid NUL-terminated string that outlives the call.
    check(unsafe { sys::cb_cuda_memory_trace_write(path.as_ptr()) })
}

/// Bytes of CPU tensors allocated while `f` ran, at their peak, beyond those live before it.
/// Counts every CPU tensor allocation of the process from the first call on (the shim wraps
/// libtorch's CPU allocator), so concurrent CPU work in other threads is counted too: a test
/// helper for the memory behaviour of models on machines without a GPU.
pub fn cpu_peak_bytes_of<T>(f: impl FnOnce() -> T) -> Result<(T, i64), ShimError> {
    let stats = || -> Result<(i64, i64), ShimError> {
        let (mut current, mut peak) = (0i64, 0i64);
        // SAFETY: valid out-pointers.
        check(unsafe { sys::cb_cpu_memory_stats(&mut current, &mut peak) })?;
        Ok((current, peak))
    };
    // SAFETY: plain calls.
    check(unsafe { sys::cb_cpu_memory_track() })?;
    check(unsafe { sys::cb_cpu_memory_reset_peak() })?;
    let (before, _) = stats()?;
    let out = f();
    let (_, peak) = stats()?;
    Ok((out, peak - before))
}

/// The CPU tensor allocations (+bytes) and frees (-bytes) made while `f` ran, in order, from
/// the same counter as [`cpu_peak_bytes_of`] (every thread of the process is seen): a test
/// helper for the order in which a model allocates and releases its intermediates.
pub fn cpu_allocation_log_of<T>(f: impl FnOnce() -> T) -> Result<(T, Vec<i64>), ShimError> {
    /// Stops logging however `f` ends (a failed assertion in a test unwinds through here).
    struct StopLogging;
    impl Drop for StopLogging {
        fn drop(&mut self) {
            // SAFETY: plain call.
            unsafe { sys::cb_cpu_memory_log(0) };
        }
    }
    // SAFETY: plain calls.
    check(unsafe { sys::cb_cpu_memory_track() })?;
    check(unsafe { sys::cb_cpu_memory_log(1) })?;
    let stop = StopLogging;
    let out = f();
    let mut log = Vec::new();
    loop {
        let mut len = 0usize;
        // SAFETY: `log` has room for `capacity` elements; `len` is a valid out-pointer.
        check(unsafe { sys::cb_cpu_memory_log_read(log.as_mut_ptr(), log.capacity(), &mut len) })?;
        if len <= log.capacity() {
            // SAFETY: the shim wrote `len` initialised elements.
            unsafe { log.set_len(len) };
            break;
        }
        log.reserve(len);
    }
    drop(stop);
    Ok((out, log))
}

/// `(free, total)` device bytes as `cudaMemGetInfo` reports them.
pub fn memory_info(device: usize) -> Result<(u64, u64), ShimError> {
    let (mut free, mut total) = (0u64, 0u64);
    // SAFETY: valid out-pointers.
    check(unsafe { sys::cb_memory_info(device as c_int, &mut free, &mut total) })?;
    Ok((free, total))
}

/// `torch.cuda.set_per_process_memory_fraction(fraction, device)`.
pub fn set_memory_fraction(fraction: f64, device: usize) -> Result<(), ShimError> {
    // SAFETY: plain call.
    check(unsafe { sys::cb_set_memory_fraction(fraction, device as c_int) })
}

pub fn memory_fraction(device: usize) -> Result<f64, ShimError> {
    let mut out = 0.0;
    // SAFETY: valid out-pointer.
    check(unsafe { sys::cb_get_memory_fraction(device as c_int, &mut out) })?;
    Ok(out)
}

/// Library versions as libtorch reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Versions {
    /// e.g. `2.11.0+cu130`
    pub torch: String,
    /// e.g. `91900` for cuDNN 9.19.0; `None` without CUDA or cuDNN.
    pub cudnn: Option<i64>,
    /// e.g. `13000` for CUDA 13.0; `None` without CUDA.
    pub cuda_runtime: Option<i64>,
    /// The interpreter's version, from the Python worker only (e.g. `3.11.7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

pub fn versions() -> Result<Versions, ShimError> {
    let (mut cudnn, mut cudart): (c_long, c_long) = (-1, -1);
    let mut buf = [0 as c_char; 64];
    // SAFETY: valid out-pointers; buf length is passed.
    check(unsafe { sys::cb_versions(&mut cudnn, &mut cudart, buf.as_mut_ptr(), buf.len()) })?;
    // SAFETY: the shim NUL-terminates within buf.
    let torch = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let known = |v: c_long| (v >= 0).then_some(v);
    Ok(Versions {
        torch,
        cudnn: known(cudnn),
        cuda_runtime: known(cudart),
        python: None,
    })
}

/// A CUDA event with timing enabled, recorded on the current stream of a device.
#[derive(Debug)]
pub struct CudaEvent {
    raw: NonNull<c_void>,
}

impl CudaEvent {
    pub fn new() -> Result<Self, ShimError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: raw is a valid out-pointer; on success the shim stores a heap object.
        check(unsafe { sys::cb_event_create(&mut raw) })?;
        NonNull::new(raw)
            .map(|raw| CudaEvent { raw })
            .ok_or_else(|| ShimError("cb_event_create returned null".into()))
    }

    pub fn record(&self, device: usize) -> Result<(), ShimError> {
        // SAFETY: self.raw is a live event created by cb_event_create.
        check(unsafe { sys::cb_event_record(self.raw.as_ptr(), device as c_int) })
    }

    pub fn synchronize(&self) -> Result<(), ShimError> {
        // SAFETY: as above.
        check(unsafe { sys::cb_event_synchronize(self.raw.as_ptr()) })
    }

    /// Milliseconds between `self` and a later `end`; both must have completed.
    pub fn elapsed_ms(&self, end: &CudaEvent) -> Result<f64, ShimError> {
        let mut ms = 0.0;
        // SAFETY: both are live events.
        check(unsafe { sys::cb_event_elapsed_ms(self.raw.as_ptr(), end.raw.as_ptr(), &mut ms) })?;
        Ok(ms)
    }
}

impl Drop for CudaEvent {
    fn drop(&mut self) {
        // SAFETY: created by cb_event_create and dropped once.
        unsafe { sys::cb_event_destroy(self.raw.as_ptr()) }
    }
}

/// Loads `libtorch_cuda.so` into the global namespace. tch links with `--as-needed`, which drops
/// the library because no symbol of it is referenced directly; without it libtorch's CUDA hooks
/// are never registered and CUDA reports unavailable. Returns the loader's error when the
/// library is absent (a CPU-only libtorch), which is not fatal.
pub fn load_torch_cuda() -> Result<(), String> {
    let name = c"libtorch_cuda.so";
    // SAFETY: dlopen with a valid C string; the handle is intentionally leaked (process lifetime).
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local message or null.
        let err = unsafe { libc::dlerror() };
        let msg = if err.is_null() {
            "unknown dlopen error".to_string()
        } else {
            // SAFETY: non-null NUL-terminated string from dlerror.
            unsafe { CStr::from_ptr(err) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(msg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_flags_round_trip_through_libtorch() {
        let before = backend_flags().unwrap();
        let wanted = BackendFlags {
            cudnn_enabled: !before.cudnn_enabled,
            cudnn_benchmark: true,
            cudnn_deterministic: true,
            deterministic_algorithms: true,
            deterministic_warn_only: true,
            tf32_matmul: !before.tf32_matmul,
            tf32_cudnn: !before.tf32_cudnn,
            autocast_cpu: Autocast::Bf16,
            autocast_cuda: Autocast::Fp16,
        };
        set_backend_flags(&wanted).unwrap();
        assert_eq!(backend_flags().unwrap(), wanted);
        set_backend_flags(&before).unwrap();
        assert_eq!(backend_flags().unwrap(), before);
    }

    #[test]
    fn autocast_on_cpu_runs_a_matmul_in_the_chosen_dtype() {
        let before = backend_flags().unwrap();
        let a = tch::Tensor::ones([4, 4], (tch::Kind::Float, tch::Device::Cpu));
        for (mode, kind) in [
            (Autocast::Bf16, tch::Kind::BFloat16),
            (Autocast::Fp16, tch::Kind::Half),
            (Autocast::Off, tch::Kind::Float),
        ] {
            set_backend_flags(&BackendFlags {
                autocast_cpu: mode,
                ..before
            })
            .unwrap();
            assert_eq!(backend_flags().unwrap().autocast_cpu, mode);
            assert_eq!(a.matmul(&a).kind(), kind, "autocast {mode:?}");
        }
        set_backend_flags(&before).unwrap();
    }

    #[test]
    fn a_scoped_autocast_ends_with_its_block_even_on_a_panic() {
        let autocast = || {
            let f = backend_flags().unwrap();
            (f.autocast_cpu, f.autocast_cuda)
        };
        let before = autocast();
        let a = tch::Tensor::ones([4, 4], (tch::Kind::Float, tch::Device::Cpu));
        let inside = with_autocast(tch::Device::Cpu, Autocast::Fp16, || a.matmul(&a).kind());
        assert_eq!(inside.unwrap(), tch::Kind::Half);
        assert_eq!(autocast(), before);
        assert_eq!(a.matmul(&a).kind(), tch::Kind::Float);
        let panicked = std::panic::catch_unwind(|| {
            with_autocast(tch::Device::Cpu, Autocast::Bf16, || panic!("inside")).unwrap()
        });
        assert!(panicked.is_err());
        assert_eq!(autocast(), before);
    }

    #[test]
    fn versions_name_the_linked_torch() {
        let v = versions().unwrap();
        assert!(v.torch.starts_with("2.11."), "torch version {}", v.torch);
    }

    #[test]
    fn allocator_calls_fail_cleanly_without_cuda() {
        if cuda_device_count().unwrap() == 0 {
            let err = memory_stats(0).unwrap_err();
            assert!(err.0.contains("CUDA"), "{err}");
            assert!(set_memory_fraction(0.5, 0).is_err());
        }
    }
}
