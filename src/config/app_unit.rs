//! Server mode under systemd: the resource limits of the app's transient units
//! (`[app-properties]`), checked and converted once into the values systemd takes.

use std::collections::BTreeMap;

use super::{invalid, ConfigError};

/// One resource property of the app's units, as systemd's D-Bus API names and types it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitProperty {
    /// The D-Bus property (`MemoryMax`, `CPUQuotaPerSecUSec`…).
    pub name: &'static str,
    pub value: u64,
    /// As configured (`MemoryMax = "512M"`), for `dewy config check`.
    pub shown: String,
}

/// The keys `[app-properties]` accepts, as written in unit files.
pub const KEYS: &str = "MemoryMax, MemoryHigh, TasksMax, CPUQuota, CPUWeight, IOWeight";

/// Parse the `[app-properties]` table; an unknown key or a bad value is an error naming it.
pub fn parse(table: &BTreeMap<String, toml::Value>) -> Result<Vec<UnitProperty>, ConfigError> {
    table
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s.trim().to_string(),
                toml::Value::Integer(i) if *i >= 0 => i.to_string(),
                other => {
                    return Err(invalid(format!(
                        "app-properties.{key} = {other}: expected a string or a non-negative integer"
                    )))
                }
            };
            let bad = |why: &str| invalid(format!("app-properties.{key} = {text:?}: {why}"));
            let (name, value) = match key.as_str() {
                "MemoryMax" | "MemoryHigh" => {
                    let bytes = systemd_bytes(&text).ok_or_else(|| {
                        bad("expected bytes with an optional K, M, G or T suffix (1024-based, as in unit files)")
                    })?;
                    let name = if key == "MemoryMax" {
                        "MemoryMax"
                    } else {
                        "MemoryHigh"
                    };
                    (name, bytes)
                }
                "TasksMax" => (
                    "TasksMax",
                    positive(&text).ok_or_else(|| bad("expected a count above 0"))?,
                ),
                "CPUQuota" => {
                    let percent = text
                        .strip_suffix('%')
                        .and_then(|p| p.trim().parse::<u64>().ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("expected a percentage above 0, like \"50%\" or \"200%\""))?;
                    // systemd takes CPU time per second of wall time, in microseconds.
                    let usec = percent
                        .checked_mul(10_000)
                        .ok_or_else(|| bad("a percentage too large to be a CPU quota"))?;
                    ("CPUQuotaPerSecUSec", usec)
                }
                "CPUWeight" | "IOWeight" => {
                    let w = positive(&text)
                        .filter(|w| *w <= 10_000)
                        .ok_or_else(|| bad("expected a weight from 1 to 10000"))?;
                    (
                        if key == "CPUWeight" {
                            "CPUWeight"
                        } else {
                            "IOWeight"
                        },
                        w,
                    )
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown key app-properties.{key} (known: {KEYS})"
                    )))
                }
            };
            Ok(UnitProperty {
                name,
                value,
                shown: format!("{key} = {text}"),
            })
        })
        .collect()
}

/// A size as unit files write it: bytes, or K, M, G, T (powers of 1024); above 0.
fn systemd_bytes(text: &str) -> Option<u64> {
    let (digits, shift) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return None,
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = digits.trim().parse().ok().filter(|n| *n > 0)?;
    n.checked_mul(1u64 << shift)
}

fn positive(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, toml::Value)]) -> BTreeMap<String, toml::Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn limits_are_converted_and_unknown_keys_refused() {
        let p = parse(&table(&[
            ("MemoryMax", "512M".into()),
            ("CPUQuota", "150%".into()),
            ("TasksMax", 64.into()),
        ]))
        .expect("valid");
        let got: Vec<(&str, u64)> = p.iter().map(|u| (u.name, u.value)).collect();
        assert_eq!(
            got,
            [
                ("CPUQuotaPerSecUSec", 1_500_000),
                ("MemoryMax", 512 << 20),
                ("TasksMax", 64)
            ]
        );
        for (key, value, why) in [
            ("ExecStart", toml::Value::from("/bin/sh"), "unknown key"),
            ("CPUQuota", "fast".into(), "percentage"),
            ("TasksMax", 0.into(), "above 0"),
            ("CPUWeight", 20000.into(), "1 to 10000"),
            ("MemoryMax", true.into(), "expected a string"),
            ("MemoryHigh", "12X".into(), "K, M, G or T"),
        ] {
            let e = parse(&table(&[(key, value)])).expect_err(key).to_string();
            assert!(e.contains(why) && e.contains(key), "{key}: {e}");
        }
    }

    /// A quota whose microseconds overflow is refused: saturated, it would be systemd's
    /// "infinity", no limit at all.
    #[test]
    fn a_cpu_quota_too_large_is_refused_not_made_unlimited() {
        let e = parse(&table(&[("CPUQuota", "1844674407370956%".into())]))
            .expect_err("too large")
            .to_string();
        assert!(e.contains("too large") && e.contains("CPUQuota"), "{e}");
        let p = parse(&table(&[("CPUQuota", "1844674407370955%".into())])).expect("the largest");
        assert_eq!(p[0].value, 1_844_674_407_370_955 * 10_000);
    }
}
