//! Dense f32 kernels: GEMM glue, im2col / col2im, convolution and linear layers.
//!
//! Layouts follow PyTorch and ONNX: activations NCHW, convolution weights OIHW, linear weights `[out, in]`.

mod conv;
mod depthwise;
#[cfg(target_arch = "x86_64")]
mod depthwise_line_x86;
#[cfg(target_arch = "x86_64")]
mod depthwise_x86;
#[cfg(target_arch = "x86_64")]
mod direct_x86;
mod gemm;
mod im2col;
#[cfg(target_arch = "x86_64")]
mod lanes_x86;
mod linear;
pub(crate) mod matvec;
#[cfg(target_arch = "x86_64")]
mod sgemm_x86;
#[cfg(test)]
mod tests;
mod transpose;
mod winograd;
mod winograd_line;

pub use conv::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, conv2d_forward_prepared,
    ConvWeights,
};
pub use depthwise::depthwise_forward;
pub(crate) use gemm::sgemm_unchecked;
pub use gemm::{sgemm, MatRef};
pub use im2col::{col2im, im2col};
pub use linear::{linear_backward, linear_forward};
pub(crate) use transpose::transpose;
pub use transpose::transpose_into;
