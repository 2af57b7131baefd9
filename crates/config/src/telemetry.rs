//! `[telemetry]`: where the daemon exports the team's traces and metrics over OpenTelemetry
//! (OTLP/HTTP; docs/TELEMETRY.md). Off unless an endpoint is set here or in the daemon's
//! `OTEL_EXPORTER_OTLP_ENDPOINT`.

use serde::{Deserialize, Deserializer, Serialize};

/// `[telemetry]` in the team file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Telemetry {
    /// The OTLP/HTTP base address (`http://host:4318`): traces go to `/v1/traces`, metrics to
    /// `/v1/metrics`. Wins over the daemon's `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "http_address"
    )]
    pub otlp_endpoint: Option<String>,
}

impl Telemetry {
    /// Whether nothing is set (the default, not stored).
    pub fn is_empty(&self) -> bool {
        *self == Telemetry::default()
    }
}

/// An `http://` or `https://` address.
fn http_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim();
    if !(t.starts_with("http://") || t.starts_with("https://")) || t.len() <= "https://".len() {
        return Err(serde::de::Error::custom(format!(
            "otlp_endpoint: expected an http:// or https:// address (OTLP/HTTP, port 4318 by default), got {s:?}"
        )));
    }
    Ok(Some(t.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_an_http_address() {
        let t: Telemetry = toml::from_str("otlp_endpoint = \"http://c:4318\"").unwrap();
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://c:4318"));
        let off: Telemetry = toml::from_str("").unwrap();
        assert!(off.is_empty());
        let e = toml::from_str::<Telemetry>("otlp_endpoint = \"c:4318\"").unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
        assert!(toml::from_str::<Telemetry>("endpoint = \"http://c\"").is_err());
    }
}
