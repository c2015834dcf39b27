use std::fmt;

/// A credential or other value that must never reach a log.
///
/// `Debug` prints `Secret(..)` whatever the content; the value is reachable only through
/// [`Secret::expose`], so every place that reads it is explicit and easy to audit.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The protected value. Callers must not log or echo it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    Secret(..),\n)");
        assert_eq!(s.expose(), "hunter2");
    }
}
