//! What an operator's `dewy deploy VERSION` may set aside, each rule only when named: the pause
//! (`--ignore-pause`) and the deploy windows (`--ignore-window`).

/// Rules an operator's deploy sets aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Deploy although the app is paused (`pause`).
    pub pause: bool,
    /// Deploy although every deploy window is closed (`window`).
    pub window: bool,
}

impl Overrides {
    /// Every name [`Overrides::parse`] knows.
    pub const NAMES: [&'static str; 2] = ["pause", "window"];

    /// Overrides from their names; an unknown name is an error naming it.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut o = Overrides::default();
        for name in names {
            match name.as_ref() {
                "pause" => o.pause = true,
                "window" => o.window = true,
                other => {
                    return Err(format!(
                        "unknown override {} (known: {})",
                        crate::text::shown(other),
                        Self::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(o)
    }

    /// The names of the overrides set, as [`Overrides::parse`] reads them.
    pub fn names(&self) -> Vec<String> {
        Self::NAMES
            .iter()
            .zip([self.pause, self.window])
            .filter(|(_, on)| *on)
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_by_name() {
        assert_eq!(Overrides::parse::<&str>(&[]).unwrap(), Overrides::default());
        assert!(Overrides::default().names().is_empty());
        let o = Overrides::parse(&["pause"]).unwrap();
        assert_eq!((o.pause, o.window), (true, false));
        assert_eq!(o.names(), ["pause"]);
        let both = Overrides::parse(&["window", "pause"]).unwrap();
        assert_eq!(both.names(), ["pause", "window"]);
        assert_eq!(Overrides::parse(&both.names()).unwrap(), both);
        let err = Overrides::parse(&["pause", "everything"]).unwrap_err();
        assert!(
            err.contains("\"everything\"") && err.contains("known: pause, window"),
            "{err}"
        );
    }
}
