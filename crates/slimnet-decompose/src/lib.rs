//! slimnet-decompose: see the crate description; under construction (no public items yet).
#![warn(missing_docs)]
