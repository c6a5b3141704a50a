//! Device telemetry from NVML, read by a background thread.
//!
//! Method: a thread polls the device every [`DEFAULT_INTERVAL`] (10 ms) for memory in use
//! (device-wide, all processes and the CUDA context included), SM clock, temperature, power and
//! clock-throttle reasons, and keeps timestamped readings in a bounded ring. A sample's telemetry
//! is the aggregate of the readings that fall inside its timed window, plus one reading taken at
//! the window's end so that calls shorter than the interval still get a value. NVML is loaded at
//! run time; without a driver (CPU machines) there is simply no telemetry.

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polling interval of the sampler thread.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(10);
/// Readings kept (at 10 ms, about ten minutes): old ones are dropped, never the window's.
const RING_CAPACITY: usize = 60_000;

/// Opens NVML, trying the versioned soname first: driver installs often lack the unversioned
/// development symlink that `Nvml::init` asks for.
pub fn open() -> Result<Nvml, String> {
    let mut builder = Nvml::builder();
    builder.lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"));
    builder
        .init()
        .or_else(|_| Nvml::init())
        .map_err(|e| format!("NVML unavailable: {e}"))
}

/// Which NVML device the CUDA device 0 of this process is: the first entry of
/// `CUDA_VISIBLE_DEVICES` (an index or a UUID), else index 0.
pub fn device_for_cuda0(nvml: &Nvml) -> Result<Device<'_>, String> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default();
    let first = visible.split(',').next().unwrap_or("").trim().to_string();
    let device = if first.is_empty() {
        nvml.device_by_index(0)
    } else if let Ok(index) = first.parse::<u32>() {
        nvml.device_by_index(index)
    } else {
        nvml.device_by_uuid(first.as_str())
    };
    device.map_err(|e| format!("NVML device for CUDA_VISIBLE_DEVICES={visible:?}: {e}"))
}

/// Static facts about the GPU, for the run fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub name: String,
    pub uuid: String,
    pub driver_version: String,
    /// CUDA version the driver supports, e.g. `13.0`.
    pub cuda_driver_version: String,
    pub memory_total_bytes: u64,
    pub sm_clock_max_mhz: u32,
}

pub fn gpu_info(nvml: &Nvml, device: &Device<'_>) -> Result<GpuInfo, String> {
    let e = |what: &str, err: nvml_wrapper::error::NvmlError| format!("NVML {what}: {err}");
    let cuda = nvml
        .sys_cuda_driver_version()
        .map_err(|err| e("CUDA driver version", err))?;
    Ok(GpuInfo {
        name: device.name().map_err(|err| e("name", err))?,
        uuid: device.uuid().map_err(|err| e("uuid", err))?,
        driver_version: nvml
            .sys_driver_version()
            .map_err(|err| e("driver version", err))?,
        cuda_driver_version: format!("{}.{}", cuda / 1000, (cuda % 1000) / 10),
        memory_total_bytes: device.memory_info().map_err(|err| e("memory", err))?.total,
        sm_clock_max_mhz: device
            .max_clock_info(Clock::SM)
            .map_err(|err| e("max SM clock", err))?,
    })
}

/// Device memory this process holds outside the caching allocator's reservations: the CUDA
/// context, cuBLAS/cuDNN handles and loaded kernels. NVML reports per-process usage; when this
/// process is not listed under its own PID (PID namespaces), the device-wide usage is taken
/// instead, but only if this is the device's only compute process.
pub fn process_overhead_bytes(reserved_bytes: u64) -> Result<u64, String> {
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let nvml = open()?;
    let device = device_for_cuda0(&nvml)?;
    let processes = device
        .running_compute_processes()
        .map_err(|e| format!("NVML compute processes: {e}"))?;
    let me = std::process::id();
    let used = match processes.iter().find(|p| p.pid == me) {
        Some(p) => match p.used_gpu_memory {
            UsedGpuMemory::Used(bytes) => bytes,
            UsedGpuMemory::Unavailable => {
                return Err("NVML does not report per-process memory".into())
            }
        },
        None if processes.len() == 1 => {
            device
                .memory_info()
                .map_err(|e| format!("NVML memory: {e}"))?
                .used
        }
        None => {
            return Err(format!(
                "this process is not among the device's {} compute processes",
                processes.len()
            ))
        }
    };
    Ok(used.saturating_sub(reserved_bytes))
}

/// One poll of the device. Fields NVML refuses on this device are `None`.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    memory_used_bytes: Option<u64>,
    sm_clock_mhz: Option<u32>,
    temperature_c: Option<u32>,
    power_mw: Option<u32>,
    throttle_reasons: Option<u64>,
    compute_processes: Option<u32>,
}

fn read(device: &Device<'_>) -> Reading {
    Reading {
        at: Instant::now(),
        memory_used_bytes: device.memory_info().ok().map(|m| m.used),
        sm_clock_mhz: device.clock_info(Clock::SM).ok(),
        temperature_c: device.temperature(TemperatureSensor::Gpu).ok(),
        power_mw: device.power_usage().ok(),
        throttle_reasons: device.current_throttle_reasons().ok().map(|r| r.bits()),
        compute_processes: device
            .running_compute_processes()
            .ok()
            .map(|p| p.len() as u32),
    }
}

/// Telemetry aggregated over one sample's window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub readings: u32,
    pub memory_used_max_bytes: Option<u64>,
    pub sm_clock_min_mhz: Option<u32>,
    pub sm_clock_mean_mhz: Option<f64>,
    pub temperature_max_c: Option<u32>,
    pub power_mean_w: Option<f64>,
    /// Bitwise OR of NVML clock-throttle reasons seen in the window (`GPU_IDLE` excluded).
    pub throttle_reasons: Option<u64>,
    /// Most compute processes on the device at once (1 = only this worker).
    pub compute_processes_max: Option<u32>,
}

/// NVML's `GPU_IDLE` reason: set whenever the GPU has nothing to do, which is not throttling.
const THROTTLE_GPU_IDLE: u64 = 0x1;

fn aggregate(readings: &[Reading]) -> Telemetry {
    fn max<T: Ord + Copy>(it: impl Iterator<Item = Option<T>>) -> Option<T> {
        it.flatten().max()
    }
    fn mean(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
        let v: Vec<f64> = it.flatten().collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
    let r = || readings.iter();
    Telemetry {
        readings: readings.len() as u32,
        memory_used_max_bytes: max(r().map(|x| x.memory_used_bytes)),
        sm_clock_min_mhz: r().filter_map(|x| x.sm_clock_mhz).min(),
        sm_clock_mean_mhz: mean(r().map(|x| x.sm_clock_mhz.map(f64::from))),
        temperature_max_c: max(r().map(|x| x.temperature_c)),
        power_mean_w: mean(r().map(|x| x.power_mw.map(|p| f64::from(p) / 1000.0))),
        throttle_reasons: r()
            .filter_map(|x| x.throttle_reasons)
            .reduce(|a, b| a | b)
            .map(|bits| bits & !THROTTLE_GPU_IDLE),
        compute_processes_max: max(r().map(|x| x.compute_processes)),
    }
}

/// Names of the throttle-reason bits, for reports.
pub fn throttle_reason_names(bits: u64) -> Vec<&'static str> {
    const NAMES: &[(u64, &str)] = &[
        (0x2, "applications_clocks"),
        (0x4, "sw_power_cap"),
        (0x8, "hw_slowdown"),
        (0x10, "sync_boost"),
        (0x20, "sw_thermal"),
        (0x40, "hw_thermal"),
        (0x80, "hw_power_brake"),
        (0x100, "display_clocks"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The background sampler. Dropping it stops the thread.
pub struct Sampler {
    ring: Arc<Mutex<VecDeque<Reading>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    info: GpuInfo,
}

impl Sampler {
    /// Starts polling the device that is CUDA device 0 of this process.
    pub fn start(interval: Duration) -> Result<Sampler, String> {
        let ring = Arc::new(Mutex::new(VecDeque::with_capacity(1024)));
        let stop = Arc::new(AtomicBool::new(false));
        let (info_tx, info_rx) = std::sync::mpsc::channel();
        let thread = {
            let (ring, stop) = (ring.clone(), stop.clone());
            std::thread::Builder::new()
                .name("nvml-sampler".into())
                .spawn(move || {
                    // NVML handles borrow the library object, so both live on this thread.
                    let nvml = match open() {
                        Ok(nvml) => nvml,
                        Err(e) => return drop(info_tx.send(Err(e))),
                    };
                    let device = match device_for_cuda0(&nvml) {
                        Ok(d) => d,
                        Err(e) => return drop(info_tx.send(Err(e))),
                    };
                    if info_tx.send(gpu_info(&nvml, &device)).is_err() {
                        return;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        let reading = read(&device);
                        let mut ring = ring.lock().unwrap_or_else(|p| p.into_inner());
                        if ring.len() == RING_CAPACITY {
                            ring.pop_front();
                        }
                        ring.push_back(reading);
                        drop(ring);
                        std::thread::sleep(interval);
                    }
                })
                .map_err(|e| format!("cannot start NVML thread: {e}"))?
        };
        let info = info_rx
            .recv()
            .map_err(|_| "NVML thread exited during start-up".to_string())??;
        Ok(Sampler {
            ring,
            stop,
            thread: Some(thread),
            info,
        })
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    /// Aggregates the readings in `[from, to]`, and the newest one at or after `to` if any.
    pub fn window(&self, from: Instant, to: Instant) -> Telemetry {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let mut inside: Vec<Reading> = ring
            .iter()
            .filter(|r| r.at >= from && r.at <= to)
            .copied()
            .collect();
        if inside.is_empty() {
            // A call shorter than the interval: use the reading closest to its end.
            if let Some(last) =
                ring.iter()
                    .min_by_key(|r| if r.at > to { r.at - to } else { to - r.at })
            {
                inside.push(*last);
            }
        }
        aggregate(&inside)
    }

    /// The newest reading's telemetry (used for warm-up clock checks).
    pub fn latest(&self) -> Telemetry {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        aggregate(&ring.back().copied().into_iter().collect::<Vec<_>>())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at: Instant, clock: u32, throttle: u64) -> Reading {
        Reading {
            at,
            memory_used_bytes: Some(u64::from(clock) * 10),
            sm_clock_mhz: Some(clock),
            temperature_c: Some(clock / 30),
            power_mw: Some(clock * 100),
            throttle_reasons: Some(throttle),
            compute_processes: Some(1),
        }
    }

    #[test]
    fn aggregate_takes_extremes_and_means_and_ignores_idle() {
        let t = Instant::now();
        let agg = aggregate(&[
            reading(t, 1000, 0x1),
            reading(t, 2000, 0x4),
            reading(t, 1500, 0x1),
        ]);
        assert_eq!(agg.readings, 3);
        assert_eq!(agg.sm_clock_min_mhz, Some(1000));
        assert_eq!(agg.sm_clock_mean_mhz, Some(1500.0));
        assert_eq!(agg.memory_used_max_bytes, Some(20_000));
        assert_eq!(agg.power_mean_w, Some(150.0));
        assert_eq!(agg.throttle_reasons, Some(0x4));
        assert_eq!(
            throttle_reason_names(0x4 | 0x40),
            vec!["sw_power_cap", "hw_thermal"]
        );
    }

    #[test]
    fn aggregate_of_nothing_is_empty() {
        let agg = aggregate(&[]);
        assert_eq!(agg, Telemetry::default());
    }
}
