//! slimnet-distill: knowledge distillation, hints and attention transfer, light building blocks,
//! a student designer, and the stage-wise multi-layer teacher-student method.
//!
//! - [`loss`]: Hinton KD ([`loss::KdLoss`], a [`slimnet_core::loss::Loss`] holding a
//!   [`FrozenTeacher`]), FitNets hints through an adapter, attention transfer; all with
//!   gradients.
//! - [`adapter`]: 1x1 conv (+BN), pooling or strided conv to bridge feature-map shapes.
//! - [`blocks`]: depthwise-separable conv, group conv + [`blocks::ChannelShuffle`], fire module,
//!   inverted residual.
//! - [`stages`]: split a teacher at cut points, compose stages, count MACs.
//! - [`designer`]: one light student stage per teacher stage, boundary shapes matching, sized
//!   by a width multiplier or a MAC budget.
//! - [`stagewise`]: phase 1 trains each student stage on the teacher's features `F(k-1) ->
//!   F(k)` (stages in parallel), phase 2 stitches them and fine-tunes with cross-entropy + KD.
//! - [`layerwise`]: the same method on any graph (skip connections, dense outputs): each
//!   convolution unit of the teacher becomes a light block of the student trained on the
//!   unit's own input and output.
//! - [`train`]: a training loop that records test accuracy against wall-clock time, and
//!   [`report`]: the SVG plot of such curves.
//!
//! ```
//! use slimnet_core::{models, tensor, Layer};
//! use slimnet_distill::designer::{design_student, StudentSpec};
//! let teacher = models::resnet_small(&mut tensor::rng(0))?;
//! let cuts = ["block1_relu2", "block2_relu2", "block3_relu2"];
//! let student = design_student(&teacher, &cuts, &[1, 1, 28, 28], &StudentSpec::width(0.5), &mut tensor::rng(1))?;
//! assert_eq!(student.stages.len(), 4);
//! assert!(student.macs(&[1, 1, 28, 28])? * 5 < slimnet_distill::stages::macs(&teacher, &[1, 1, 28, 28])?);
//! # Ok::<(), slimnet_distill::DistillError>(())
//! ```
#![warn(missing_docs)]

pub mod adapter;
pub mod blocks;
pub mod designer;
mod error;
pub mod layerwise;
pub mod loss;
pub mod report;
pub mod stages;
pub mod stagewise;
mod teacher;
pub mod train;

pub use error::{DistillError, Result};
pub use teacher::FrozenTeacher;
