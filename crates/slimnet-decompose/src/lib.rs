//! slimnet-decompose: low-rank approximation of convolution and fully-connected weights.
#![warn(missing_docs)]

mod error;
mod linalg;
pub mod svd;
mod util;

pub use error::{Error, Result};
