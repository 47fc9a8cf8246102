//! One printed line per training epoch.

use slimnet_core::train::{Callback, EpochStats};
use slimnet_core::{Graph, Result};

type Column = Box<dyn FnMut(&Graph) -> f64>;

/// A training callback that prints one line per epoch ([`EpochStats`]' `Display`: training
/// loss and accuracy, test accuracy, learning rate, seconds) and any extra columns.
///
/// ```
/// use slimnet_core::{data::Dataset, models, optim, tensor, train, Layer};
/// use slimnet_testkit::PrintEpochs;
/// let mut model = models::lenet300(&mut tensor::rng(0))?;
/// let x = tensor::uniform(&[8, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
/// let data = Dataset::new(x, (0..8).map(|i| i % 10).collect(), 10)?;
/// let params = |g: &slimnet_core::Graph| (g as &dyn Layer).num_params() as f64;
/// train::Trainer::new(train::TrainConfig::default().with_epochs(1))
///     .optimizer(optim::Sgd::new(0.01))
///     .callback(PrintEpochs::new().with_column("params", params))
///     .fit(&mut model, &data, None)?; // one line, ending in `params 266610.0000`
/// # Ok::<(), slimnet_core::Error>(())
/// ```
#[derive(Default)]
pub struct PrintEpochs {
    columns: Vec<(String, Column)>,
}

impl PrintEpochs {
    /// The standard columns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a column `name`, the value `f` computes from the model at the end of each epoch.
    pub fn with_column(mut self, name: &str, f: impl FnMut(&Graph) -> f64 + 'static) -> Self {
        self.columns.push((name.to_string(), Box::new(f)));
        self
    }
}

impl Callback for PrintEpochs {
    fn on_epoch_end(&mut self, model: &mut Graph, s: &EpochStats) -> Result<()> {
        let mut line = s.to_string();
        for (name, f) in &mut self.columns {
            line += &format!("  {name} {:.4}", f(model));
        }
        println!("{line}");
        Ok(())
    }
}
