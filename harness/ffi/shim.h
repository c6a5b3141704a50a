// C ABI over the parts of libtorch that tch does not expose: backend flags, caching-allocator
// statistics and limits, versions, and CUDA events. Every function returns 0 on success and -1
// on failure, with the message available from cb_last_error() on the calling thread.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int cudnn_enabled;
  int cudnn_benchmark;
  int cudnn_deterministic;
  int deterministic_algorithms;
  int deterministic_warn_only;
  int tf32_matmul;
  int tf32_cudnn;
  // Autocast (torch.autocast) per device type: 0 off, 1 fp16, 2 bf16. Thread-local in
  // libtorch: it acts on the calling thread.
  int autocast_cpu;
  int autocast_cuda;
} cb_backend_flags;

typedef struct {
  int64_t allocated_current;
  int64_t allocated_peak;
  int64_t reserved_current;
  int64_t reserved_peak;
  int64_t active_peak;
  int64_t requested_peak;
  int64_t num_alloc_retries;
  int64_t num_ooms;
} cb_memory_stats;

const char* cb_last_error(void);

int cb_set_backend_flags(const cb_backend_flags* flags);
int cb_get_backend_flags(cb_backend_flags* out);

int cb_cuda_device_count(int* out);
int cb_memory_stats_get(int device, cb_memory_stats* out);
int cb_reset_peak_stats(int device);
int cb_empty_cache(void);
int cb_memory_info(int device, uint64_t* free_bytes, uint64_t* total_bytes);
int cb_set_memory_fraction(double fraction, int device);
int cb_get_memory_fraction(int device, double* out);

// The CUDA caching allocator's trace of allocations, frees and segment (de)allocations, as the
// allocator records it for torch.cuda.memory._record_memory_history; max_entries 0 stops it.
int cb_cuda_memory_history(size_t max_entries);
// Writes the recorded trace as CSV (action,address,bytes,stream) to `path`.
int cb_cuda_memory_trace_write(const char* path);

// Versions as libtorch reports them; -1 where unknown (e.g. no CUDA).
int cb_versions(long* cudnn, long* cudart, char* torch_version, size_t torch_version_len);

// CUDA events on the current stream of `device`, created with timing enabled.
// CPU tensor memory: the first call installs a counting wrapper around libtorch's CPU allocator
// (for memory tests on machines without a GPU); later allocations are counted, earlier ones not.
int cb_cpu_memory_track(void);
int cb_cpu_memory_stats(int64_t* current, int64_t* peak);
int cb_cpu_memory_reset_peak(void);
// Starts (on != 0) or stops logging CPU allocations and frees, clearing the log either way.
int cb_cpu_memory_log(int on);
// Copies up to `capacity` logged events (+bytes, -bytes) to `out`; `len` gets the log's length.
int cb_cpu_memory_log_read(int64_t* out, size_t capacity, size_t* len);

int cb_event_create(void** out);
int cb_event_record(void* event, int device);
int cb_event_synchronize(void* event);
int cb_event_elapsed_ms(void* start, void* end, double* out);
void cb_event_destroy(void* event);

#ifdef __cplusplus
}
#endif
