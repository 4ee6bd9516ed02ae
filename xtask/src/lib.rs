//! Repository tasks for the virtio device crates: the clause list extracted
//! from the spec (`spec-clauses`) and the conformance matrix
//! (`conformance`). See `xtask/README.md` for the file formats and rules.

// A development tool run by hand and by CI on the repository's own files:
// a panic or an index out of range is a failed CI step with a backtrace, not
// a device fault, so the library-code lints of the workspace are relaxed.
#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod clauses;
pub mod ffi_header;
pub mod markers;
pub mod matrix;
pub mod plots;
pub mod tex;
