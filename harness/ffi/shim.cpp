// See shim.h. Compiled by build.rs against the headers of the libtorch that tch links.
//
// The CUDA caching allocator's memory-fraction setter is only declared in
// c10/cuda/CUDACachingAllocator.h, which needs the CUDA runtime headers; build.rs takes those
// from the triton wheel that PyTorch depends on (a complete set, unlike the CUDA runtime wheel).
// The allocator is reached through at::getDeviceAllocator and a static_cast, so the shim never
// references a libc10_cuda symbol and the binary still links and runs with a CPU-only libtorch.
#include "shim.h"

#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/Event.h>
#include <torch/version.h>

#ifdef CLAIMBENCH_HAVE_CUDA_HEADERS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_map>

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const c10::Error& e) {
    last_error = e.what_without_backtrace();
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

// 0 off, 1 fp16, 2 bf16 (shim.h).
void set_autocast(c10::DeviceType device_type, int mode) {
  at::autocast::set_autocast_enabled(device_type, mode != 0);
  if (mode != 0) {
    at::autocast::set_autocast_dtype(device_type, mode == 1 ? at::kHalf : at::kBFloat16);
  }
}

int get_autocast(c10::DeviceType device_type) {
  if (!at::autocast::is_autocast_enabled(device_type)) {
    return 0;
  }
  auto dtype = at::autocast::get_autocast_dtype(device_type);
  return dtype == at::kHalf ? 1 : dtype == at::kBFloat16 ? 2 : -1;
}

c10::DeviceAllocator* cuda_allocator() {
  if (!at::hasCUDA()) {
    throw std::runtime_error("CUDA is not available to libtorch");
  }
  return at::getDeviceAllocator(c10::DeviceType::CUDA);
}
}  // namespace

extern "C" {

const char* cb_last_error(void) { return last_error.c_str(); }

int cb_set_backend_flags(const cb_backend_flags* f) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    ctx.setUserEnabledCuDNN(f->cudnn_enabled != 0);
    ctx.setBenchmarkCuDNN(f->cudnn_benchmark != 0);
    ctx.setDeterministicCuDNN(f->cudnn_deterministic != 0);
    ctx.setDeterministicAlgorithms(f->deterministic_algorithms != 0, f->deterministic_warn_only != 0);
    ctx.setAllowTF32CuBLAS(f->tf32_matmul != 0);
    ctx.setAllowTF32CuDNN(f->tf32_cudnn != 0);
    set_autocast(c10::DeviceType::CPU, f->autocast_cpu);
    set_autocast(c10::DeviceType::CUDA, f->autocast_cuda);
  });
}

int cb_get_backend_flags(cb_backend_flags* out) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    out->cudnn_enabled = ctx.userEnabledCuDNN();
    out->cudnn_benchmark = ctx.benchmarkCuDNN();
    out->cudnn_deterministic = ctx.deterministicCuDNN();
    out->deterministic_algorithms = ctx.deterministicAlgorithms();
    out->deterministic_warn_only = ctx.deterministicAlgorithmsWarnOnly();
    out->tf32_matmul = ctx.allowTF32CuBLAS();
    out->tf32_cudnn = ctx.allowTF32CuDNN();
    out->autocast_cpu = get_autocast(c10::DeviceType::CPU);
    out->autocast_cuda = get_autocast(c10::DeviceType::CUDA);
  });
}

int cb_cuda_device_count(int* out) {
  return guarded([&] { *out = at::hasCUDA() ? static_cast<int>(at::detail::getCUDAHooks().deviceCount()) : 0; });
}

int cb_memory_stats_get(int device, cb_memory_stats* out) {
  return guarded([&] {
    auto stats = cuda_allocator()->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    constexpr auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out->allocated_current = stats.allocated_bytes[all].current;
    out->allocated_peak = stats.allocated_bytes[all].peak;
    out->reserved_current = stats.reserved_bytes[all].current;
    out->reserved_peak = stats.reserved_bytes[all].peak;
    out->active_peak = stats.active_bytes[all].peak;
    out->requested_peak = stats.requested_bytes[all].peak;
    out->num_alloc_retries = stats.num_alloc_retries;
    out->num_ooms = stats.num_ooms;
  });
}

int cb_reset_peak_stats(int device) {
  return guarded([&] { cuda_allocator()->resetPeakStats(static_cast<c10::DeviceIndex>(device)); });
}

namespace {
// Counts the bytes of live CPU tensors, like the CUDA caching allocator's "allocated" statistic
// (no caching on the CPU, so allocated is also what is held). Its pointers are "simple" (data
// and context are the same pointer), as oneDNN's raw allocations require; sizes are kept in a
// table until the block is freed through the wrapped allocator's own deleter.
struct CountingCpuAllocator final : c10::Allocator {
  CountingCpuAllocator(c10::Allocator* base, c10::DeleterFnPtr base_deleter)
      : base(base), base_deleter(base_deleter) {}

  static void release(void* ptr);

  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr inner = base->allocate(n);
    void* data = inner.get();
    if (data == nullptr || inner.get_context() != data || inner.get_deleter() != base_deleter) {
      return inner;  // not a plain block of the wrapped allocator: passed through uncounted
    }
    inner.release_context();
    {
      std::lock_guard<std::mutex> lock(mutex);
      sizes[data] = n;
      current += static_cast<int64_t>(n);
      peak = std::max(peak, current);
      if (logging) log.push_back(static_cast<int64_t>(n));
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  c10::Allocator* base;
  c10::DeleterFnPtr base_deleter;
  std::mutex mutex;
  std::unordered_map<void*, size_t> sizes;
  int64_t current = 0;
  int64_t peak = 0;
  // While `logging`: +bytes per allocation and -bytes per free, in order.
  bool logging = false;
  std::vector<int64_t> log;
};

CountingCpuAllocator* installed = nullptr;

void CountingCpuAllocator::release(void* ptr) {
  auto* self = installed;
  {
    std::lock_guard<std::mutex> lock(self->mutex);
    auto it = self->sizes.find(ptr);
    if (it != self->sizes.end()) {
      self->current -= static_cast<int64_t>(it->second);
      if (self->logging) self->log.push_back(-static_cast<int64_t>(it->second));
      self->sizes.erase(it);
    }
  }
  self->base_deleter(ptr);
}

CountingCpuAllocator* counting_cpu_allocator() {
  // Never destroyed: tensors may outlive any scope, and their deleters point here.
  static auto* counting = [] {
    c10::Allocator* base = c10::GetCPUAllocator();
    TORCH_CHECK(base->raw_deleter() != nullptr, "the CPU allocator has no raw deleter");
    installed = new CountingCpuAllocator(base, base->raw_deleter());
    c10::SetCPUAllocator(installed, /*priority=*/100);
    return installed;
  }();
  return counting;
}
}  // namespace

int cb_cpu_memory_track(void) {
  return guarded([&] { counting_cpu_allocator(); });
}

int cb_cpu_memory_stats(int64_t* current, int64_t* peak) {
  return guarded([&] {
    auto* a = counting_cpu_allocator();
    std::lock_guard<std::mutex> lock(a->mutex);
    *current = a->current;
    *peak = a->peak;
  });
}

int cb_cpu_memory_reset_peak(void) {
  return guarded([&] {
    auto* a = counting_cpu_allocator();
    std::lock_guard<std::mutex> lock(a->mutex);
    a->peak = a->current;
  });
}

int cb_cpu_memory_log(int on) {
  return guarded([&] {
    auto* a = counting_cpu_allocator();
    std::lock_guard<std::mutex> lock(a->mutex);
    a->logging = on != 0;
    a->log.clear();
  });
}

int cb_cpu_memory_log_read(int64_t* out, size_t capacity, size_t* len) {
  return guarded([&] {
    auto* a = counting_cpu_allocator();
    std::lock_guard<std::mutex> lock(a->mutex);
    *len = a->log.size();
    std::copy_n(a->log.begin(), std::min(capacity, a->log.size()), out);
  });
}

int cb_empty_cache(void) {
  return guarded([&] { cuda_allocator()->emptyCache(); });
}

int cb_memory_info(int device, uint64_t* free_bytes, uint64_t* total_bytes) {
  return guarded([&] {
    auto info = cuda_allocator()->getMemoryInfo(static_cast<c10::DeviceIndex>(device));
    *free_bytes = info.first;
    *total_bytes = info.second;
  });
}

int cb_set_memory_fraction(double fraction, int device) {
  return guarded([&] {
#ifdef CLAIMBENCH_HAVE_CUDA_HEADERS
    auto* cuda = static_cast<c10::cuda::CUDACachingAllocator::CUDAAllocator*>(cuda_allocator());
    cuda->setMemoryFraction(fraction, static_cast<c10::DeviceIndex>(device));
#else
    (void)fraction;
    (void)device;
    throw std::runtime_error("this build of claimbench has no CUDA headers: a VRAM budget cannot be set");
#endif
  });
}

int cb_get_memory_fraction(int device, double* out) {
  return guarded([&] {
#ifdef CLAIMBENCH_HAVE_CUDA_HEADERS
    auto* cuda = static_cast<c10::cuda::CUDACachingAllocator::CUDAAllocator*>(cuda_allocator());
    *out = cuda->getMemoryFraction(static_cast<c10::DeviceIndex>(device));
#else
    (void)device;
    *out = 1.0;
#endif
  });
}

#ifdef CLAIMBENCH_HAVE_CUDA_HEADERS
namespace {
c10::cuda::CUDACachingAllocator::CUDAAllocator* cuda_caching_allocator() {
  return static_cast<c10::cuda::CUDACachingAllocator::CUDAAllocator*>(cuda_allocator());
}

const char* trace_action_name(c10::CachingDeviceAllocator::TraceEntry::Action action) {
  using A = c10::CachingDeviceAllocator::TraceEntry::Action;
  switch (action) {
    case A::ALLOC: return "alloc";
    case A::FREE_REQUESTED: return "free_requested";
    case A::FREE_COMPLETED: return "free_completed";
    case A::SEGMENT_ALLOC: return "segment_alloc";
    case A::SEGMENT_FREE: return "segment_free";
    case A::SEGMENT_MAP: return "segment_map";
    case A::SEGMENT_UNMAP: return "segment_unmap";
    case A::SNAPSHOT: return "snapshot";
    case A::OOM: return "oom";
  }
  return "unknown";
}
}  // namespace
#endif

int cb_cuda_memory_history(size_t max_entries) {
  return guarded([&] {
#ifdef CLAIMBENCH_HAVE_CUDA_HEADERS
    // No stack context (there is no Python stack to gather); the trace itself is recorded
    // whenever history is on.
    cuda_caching_allocator()->recordHistory(
        max_entries > 0, nullptr, max_entries, c10::cuda::CUDACachingAllocator::RecordContext::NEVER,
        /*clearHistory=*/max_entries == 0, {});
#else
    (void)max_entries;
    throw std::runtime_error("this build of claimbench has no CUDA headers: no allocator trace");
#endif
  });
}

int cb_cuda_memory_trace_write(const char* path) {
  return guarded([&] {
#ifdef CLAIMBENCH_HAVE_CUDA_HEADERS
    auto snapshot = cuda_caching_allocator()->snapshot({0, 0}, true);
    std::ofstream out(path);
    if (!out) {
      throw std::runtime_error(std::string("cannot write ") + path + ": " + std::strerror(errno));
    }
    out << "action,address,bytes,stream\n";
    for (const auto& trace : snapshot.device_traces) {
      for (const auto& e : trace) {
        out << trace_action_name(e.action_) << ',' << e.addr_ << ',' << e.size_ << ','
            << reinterpret_cast<std::uintptr_t>(e.stream_) << '\n';
      }
    }
    // The segments held when the trace is written: with the trace's segment events they give
    // what was reserved before it began (segments cached by earlier calls).
    for (const auto& segment : snapshot.segments) {
      out << "segment_at_end," << segment.address << ',' << segment.total_size << ','
          << reinterpret_cast<std::uintptr_t>(segment.stream) << '\n';
    }
    out.flush();
    if (!out) {
      throw std::runtime_error(std::string("writing ") + path + " failed: " + std::strerror(errno));
    }
#else
    (void)path;
    throw std::runtime_error("this build of claimbench has no CUDA headers: no allocator trace");
#endif
  });
}

int cb_versions(long* cudnn, long* cudart, char* torch_version, size_t torch_version_len) {
  return guarded([&] {
    const auto& hooks = at::detail::getCUDAHooks();
    bool cuda = at::hasCUDA();
    *cudnn = cuda && hooks.hasCuDNN() ? hooks.versionRuntimeCuDNN() : -1;
    *cudart = cuda ? hooks.versionCUDART() : -1;
    if (torch_version_len > 0) {
      std::strncpy(torch_version, TORCH_VERSION, torch_version_len - 1);
      torch_version[torch_version_len - 1] = '\0';
    }
  });
}

int cb_event_create(void** out) {
  return guarded([&] {
    // BACKEND_DEFAULT maps to cudaEventDefault, which keeps timing enabled.
    *out = new c10::Event(c10::DeviceType::CUDA, c10::EventFlag::BACKEND_DEFAULT);
  });
}

int cb_event_record(void* event, int device) {
  return guarded([&] {
    auto stream = at::accelerator::getCurrentStream(static_cast<c10::DeviceIndex>(device));
    static_cast<c10::Event*>(event)->record(stream);
  });
}

int cb_event_synchronize(void* event) {
  return guarded([&] { static_cast<c10::Event*>(event)->synchronize(); });
}

int cb_event_elapsed_ms(void* start, void* end, double* out) {
  return guarded([&] { *out = static_cast<c10::Event*>(start)->elapsedTime(*static_cast<c10::Event*>(end)); });
}

void cb_event_destroy(void* event) { delete static_cast<c10::Event*>(event); }

}  // extern "C"
