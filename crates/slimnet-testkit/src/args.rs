//! `--flag value` command lines.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A usage error (unknown flag, missing or bad value, `--help`); its text is the message and
/// the usage line.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Flags of the form `--name value`, read once, each taken by [`get`](Self::get) with its
/// default; [`finish`](Self::finish) rejects flags nobody took.
///
/// ```
/// use slimnet_testkit::Args;
/// let mut a = Args::from(["--epochs", "3"], "usage: demo [--epochs N] [--seed N]")?;
/// assert_eq!(a.get("epochs", 10usize)?, 3);
/// assert_eq!(a.get("seed", 1u64)?, 1);
/// a.finish()?;
/// # Ok::<(), slimnet_testkit::Usage>(())
/// ```
#[derive(Debug)]
pub struct Args {
    values: BTreeMap<String, String>,
    usage: String,
}

impl Args {
    /// The flags of this process.
    ///
    /// # Errors
    /// `--help`, or a flag without a value.
    pub fn parse(usage: &str) -> Result<Self, Usage> {
        Self::from(std::env::args().skip(1), usage)
    }

    /// Flags from a list of arguments.
    ///
    /// # Errors
    /// `--help`, an argument that is not a flag, or a flag without a value.
    pub fn from<I, S>(args: I, usage: &str) -> Result<Self, Usage>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values = BTreeMap::new();
        let mut it = args.into_iter().map(Into::into);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(Usage(usage.to_string()));
            }
            let Some(name) = flag.strip_prefix("--") else {
                return Err(Usage(format!("unexpected argument `{flag}`\n{usage}")));
            };
            let v = it
                .next()
                .ok_or_else(|| Usage(format!("--{name} needs a value\n{usage}")))?;
            values.insert(name.to_string(), v);
        }
        Ok(Self {
            values,
            usage: usage.to_string(),
        })
    }

    /// The value of `--name`, or `default` when it was not given.
    ///
    /// # Errors
    /// A value that does not parse as `T`.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, Usage>
    where
        T::Err: fmt::Display,
    {
        match self.values.remove(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| Usage(format!("--{name} {v}: {e}\n{}", self.usage))),
        }
    }

    /// Checks that every flag given was taken.
    ///
    /// # Errors
    /// The first unknown flag.
    pub fn finish(&self) -> Result<(), Usage> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(k) => Err(Usage(format!("unknown flag --{k}\n{}", self.usage))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag() {
        let e = Args::from(["--epochs"], "u").unwrap_err();
        assert!(e.0.starts_with("--epochs needs a value"), "{e}");
        let mut a = Args::from(["--epochs", "x", "--nope", "1"], "u").unwrap();
        assert!(a
            .get("epochs", 1usize)
            .unwrap_err()
            .0
            .starts_with("--epochs x:"));
        assert!(a.finish().unwrap_err().0.starts_with("unknown flag --nope"));
        assert!(Args::from(["loose"], "u").is_err());
        assert_eq!(Args::from(["--help"], "usage").unwrap_err().0, "usage");
    }
}
