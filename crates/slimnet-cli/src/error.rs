//! Errors of the command line: a message and the exit code of its class.

use slimnet::pipeline::PipelineError;

/// The exit codes (also in `slimnet --help`).
pub mod exit {
    /// An error of no other class (a bug, or an error slimnet does not classify).
    pub const INTERNAL: i32 = 1;
    /// Bad arguments: an unknown command or option, a missing or malformed value.
    pub const USAGE: i32 = 2;
    /// A file that cannot be read or written (missing, a folder, no permission).
    pub const IO: i32 = 3;
    /// A recipe that does not parse: TOML syntax, an unknown key, a value of the wrong type.
    pub const RECIPE: i32 = 4;
    /// A model file that is not a model: corrupt, truncated, an unknown layer kind.
    pub const MODEL: i32 = 5;
    /// Data that does not fit the model (input shape, classes) or an unknown data set.
    pub const DATA: i32 = 6;
    /// Steps that cannot run in that order, or with those settings.
    pub const STEPS: i32 = 7;
    /// A step that failed while running.
    pub const STEP_FAILED: i32 = 8;
}

/// An error to print on one line, with its exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code (see [`exit`]).
    pub code: i32,
    /// The message.
    pub message: String,
}

impl CliError {
    /// An error of class `code`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, message)
    }
}

impl From<slimnet::Error> for CliError {
    fn from(e: slimnet::Error) -> Self {
        use slimnet::core::Error as E;
        let e = match PipelineError::from_error(e) {
            Ok(p) => {
                let code = match &p {
                    PipelineError::Recipe { .. } => exit::RECIPE,
                    PipelineError::Order { .. } | PipelineError::Settings { .. } => exit::STEPS,
                    PipelineError::Data(_) => exit::DATA,
                    PipelineError::Step { source, .. } => match source {
                        E::Io(_) => exit::IO,
                        _ => exit::STEP_FAILED,
                    },
                    _ => exit::INTERNAL,
                };
                return Self::new(code, p.to_string());
            }
            Err(e) => e,
        };
        let e = match e.into_method::<slimnet::onnx::OnnxError>() {
            Ok((_, o)) => {
                use slimnet::onnx::OnnxError as O;
                let code = match &o {
                    O::Io { .. } => exit::IO,
                    O::Export { .. } => exit::INTERNAL,
                    _ => exit::MODEL,
                };
                return Self::new(code, o.to_string());
            }
            Err(e) => e,
        };
        let code = match &e {
            E::Io(_) => exit::IO,
            E::ModelFile(_) | E::UnknownKind { .. } => exit::MODEL,
            E::Shape { .. } | E::Data { .. } => exit::DATA,
            _ => exit::INTERNAL,
        };
        Self::new(code, e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::new(exit::IO, e.to_string())
    }
}
