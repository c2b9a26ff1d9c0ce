//! What every example binary shares.

/// mimalloc keeps freed memory for reuse, where glibc's malloc returns large blocks to the
/// kernel and their fresh pages fault in again at every training step: on flex a training step
/// is 5-7% faster on an idle machine, and up to 1.4x faster on a busy one (benches/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
