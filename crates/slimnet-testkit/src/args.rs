//! `--flag value` and `--switch` command lines.

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

/// Flags of the form `--name value` and switches of the form `--name` (a flag followed by
/// another flag or by nothing), read once, each taken by [`get`](Self::get),
/// [`get_opt`](Self::get_opt) or [`switch`](Self::switch); [`finish`](Self::finish) rejects
/// flags nobody took.
///
/// ```
/// use slimnet_testkit::Args;
/// let mut a = Args::from(["--epochs", "3", "--quick"], "usage: demo [--epochs N] [--seed N] [--quick]")?;
/// assert_eq!(a.get("epochs", 10usize)?, 3);
/// assert_eq!(a.get("seed", 1u64)?, 1);
/// assert_eq!(a.get_opt::<f32>("target")?, None);
/// assert!(a.switch("quick")?);
/// a.finish()?;
/// # Ok::<(), slimnet_testkit::Usage>(())
/// ```
#[derive(Debug)]
pub struct Args {
    values: BTreeMap<String, Option<String>>,
    usage: String,
}

impl Args {
    /// The flags of this process.
    ///
    /// # Errors
    /// `--help`, or an argument that is not a flag.
    pub fn parse(usage: &str) -> Result<Self, Usage> {
        Self::from(std::env::args().skip(1), usage)
    }

    /// Flags from a list of arguments.
    ///
    /// # Errors
    /// `--help`, or an argument that is not a flag.
    pub fn from<I, S>(args: I, usage: &str) -> Result<Self, Usage>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values = BTreeMap::new();
        let mut it = args.into_iter().map(Into::into).peekable();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(Usage(usage.to_string()));
            }
            let Some(name) = flag.strip_prefix("--") else {
                return Err(Usage(format!("unexpected argument `{flag}`\n{usage}")));
            };
            let value = it.next_if(|v| !v.starts_with("--"));
            values.insert(name.to_string(), value);
        }
        Ok(Self {
            values,
            usage: usage.to_string(),
        })
    }

    /// The value of `--name`, or `default` when it was not given.
    ///
    /// # Errors
    /// A flag without a value, or a value that does not parse as `T`.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, Usage>
    where
        T::Err: fmt::Display,
    {
        Ok(self.get_opt(name)?.unwrap_or(default))
    }

    /// The value of `--name`, when it was given.
    ///
    /// # Errors
    /// A flag without a value, or a value that does not parse as `T`.
    pub fn get_opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, Usage>
    where
        T::Err: fmt::Display,
    {
        match self.values.remove(name) {
            None => Ok(None),
            Some(None) => Err(Usage(format!("--{name} needs a value\n{}", self.usage))),
            Some(Some(v)) => v
                .parse()
                .map(Some)
                .map_err(|e| Usage(format!("--{name} {v}: {e}\n{}", self.usage))),
        }
    }

    /// The comma-separated values of `--name`, each one of `all`, in the order given; all of
    /// `all` when the flag was not given.
    ///
    /// ```
    /// use slimnet_testkit::Args;
    /// let mut a = Args::from(["--runs", "kd,scratch"], "u")?;
    /// assert_eq!(a.get_subset("runs", &["scratch", "kd", "stagewise"])?, ["kd", "scratch"]);
    /// assert_eq!(a.get_subset("other", &["a", "b"])?, ["a", "b"]);
    /// # Ok::<(), slimnet_testkit::Usage>(())
    /// ```
    ///
    /// # Errors
    /// A flag without a value, or a value not in `all`.
    pub fn get_subset(&mut self, name: &str, all: &[&str]) -> Result<Vec<String>, Usage> {
        let Some(list) = self.get_opt::<String>(name)? else {
            return Ok(all.iter().map(|s| s.to_string()).collect());
        };
        let values: Vec<String> = list.split(',').map(str::to_string).collect();
        match values.iter().find(|v| !all.contains(&v.as_str())) {
            Some(v) => Err(Usage(format!(
                "--{name}: unknown value `{v}` (expected some of {})\n{}",
                all.join(","),
                self.usage
            ))),
            None => Ok(values),
        }
    }

    /// Whether the switch `--name` was given.
    ///
    /// # Errors
    /// A value after the switch.
    pub fn switch(&mut self, name: &str) -> Result<bool, Usage> {
        match self.values.remove(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) => Err(Usage(format!(
                "--{name} takes no value (got `{v}`)\n{}",
                self.usage
            ))),
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
        let mut a = Args::from(["--epochs"], "u").unwrap();
        let e = a.get("epochs", 1usize).unwrap_err();
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

    #[test]
    fn switches_take_no_value() {
        let mut a = Args::from(["--quick", "--seed", "2", "--verbose"], "u").unwrap();
        assert!(a.switch("quick").unwrap());
        assert!(a.switch("verbose").unwrap());
        assert!(!a.switch("absent").unwrap());
        assert_eq!(a.get("seed", 1u64).unwrap(), 2);
        a.finish().unwrap();
        let mut a = Args::from(["--quick", "yes"], "u").unwrap();
        assert!(a
            .switch("quick")
            .unwrap_err()
            .0
            .starts_with("--quick takes no value"));
        // a negative number is a value, not a flag
        let mut a = Args::from(["--lr", "-0.5"], "u").unwrap();
        assert_eq!(a.get("lr", 0.0f32).unwrap(), -0.5);
    }
}
