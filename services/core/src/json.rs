//! JSON request helpers shared by every service.

use serde::{Deserialize, Deserializer};

/// The largest magnitude at which every integer is exactly a float (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Reads an integer field the way JSON Schema defines `integer`: `7` and also `7.0`. A float is
/// accepted only while it is exactly representable (below 2^53), so no out-of-range literal can
/// round its way into range. Use with `#[serde(deserialize_with = "...")]`.
pub fn lenient_int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = serde_json::Number::deserialize(d)?;
    let v = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < EXACT => f as i64,
        _ => return Err(serde::de::Error::custom(format!("expected an integer in range, got {n}"))),
    };
    T::try_from(v).map_err(|_| serde::de::Error::custom(format!("integer {v} out of range")))
}

/// [`lenient_int`] for optional fields (use with `#[serde(default, deserialize_with = ...)]`).
pub fn lenient_int_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    #[derive(Deserialize)]
    #[serde(transparent)]
    struct Wrapped<T: TryFrom<i64>>(#[serde(deserialize_with = "lenient_int")] T);
    Ok(Option::<Wrapped<T>>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct B {
        #[serde(default, deserialize_with = "lenient_int_opt")]
        n: Option<i32>,
    }

    #[test]
    fn integers_as_json_schema_defines_them() {
        let n = |s: &str| serde_json::from_str::<B>(s).map(|b| b.n);
        assert_eq!(n(r#"{"n": 7}"#).expect("int"), Some(7));
        assert_eq!(n(r#"{"n": -7.0}"#).expect("integral float"), Some(-7));
        assert_eq!(n(r#"{"n": null}"#).expect("null"), None);
        assert_eq!(n("{}").expect("absent"), None);
        assert!(n(r#"{"n": 7.5}"#).is_err());
        assert!(n(r#"{"n": 2147483648}"#).is_err());
        assert!(n(r#"{"n": -9223372036854775809}"#).is_err());
        assert!(n(r#"{"n": "7"}"#).is_err());
    }
}
