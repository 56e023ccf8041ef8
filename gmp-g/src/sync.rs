//! The atomics shim: std atomics normally, loom's under `--cfg gmp_loom`, so
//! the same lock-free code is model-checked without a second copy.

#[cfg(gmp_loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(not(gmp_loom))]
pub use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
