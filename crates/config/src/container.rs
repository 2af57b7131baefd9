//! `container = { image, runtime, memory, cpus, pids, runtime_class }` on a role or a teammate
//! (issue 66): read from the team file and checked, so nothing the runtime would read as an
//! option or a second argument reaches its command line.

use agent_team_protocol::ContainerSpec;
use serde::Deserialize;

/// A `container` table as written: `cpus` may be a number or a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawContainer {
    image: String,
    runtime: Option<String>,
    memory: Option<String>,
    cpus: Option<toml::Value>,
    pids: Option<u32>,
    runtime_class: Option<String>,
}

impl RawContainer {
    /// The checked spec, or what is wrong with it.
    pub(crate) fn resolve(self) -> Result<ContainerSpec, String> {
        let cpus = match self.cpus {
            None => None,
            Some(toml::Value::Integer(i)) => Some(i.to_string()),
            Some(toml::Value::Float(f)) => Some(f.to_string()),
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => return Err(format!("cpus = {other} is not a number of CPUs")),
        };
        let spec = ContainerSpec {
            image: self.image,
            runtime: self.runtime,
            memory: self.memory,
            cpus,
            pids: self.pids,
            runtime_class: self.runtime_class,
        };
        check_container(&spec)?;
        Ok(spec)
    }
}

/// Whether `spec` may be handed to a container runtime: an image name, a known runtime,
/// sizes and counts it reads as such.
pub fn check_container(spec: &ContainerSpec) -> Result<(), String> {
    let image = spec.image.as_str();
    if image.is_empty() || image.len() > 255 {
        return Err("image names an image of 1 to 255 characters".into());
    }
    if image.starts_with('-')
        || image
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "-_.:/@+".contains(c)))
    {
        return Err(format!(
            "image {image:?} is not an image name (e.g. \"docker.io/library/debian:12\")"
        ));
    }
    match spec.runtime.as_deref() {
        None | Some("podman") | Some("docker") => {}
        Some(other) => {
            return Err(format!(
                "runtime {other:?} is not a container runtime agent-team runs: \"podman\" or \"docker\""
            ));
        }
    }
    if let Some(m) = &spec.memory {
        memory_bytes(m)?;
    }
    if let Some(c) = &spec.cpus {
        match c.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 1024.0 && !c.starts_with(['+', '-']) => {}
            _ => return Err(format!("cpus = {c:?} is not a number of CPUs above 0")),
        }
    }
    if spec.pids == Some(0) {
        return Err("pids = 0 would let it start no process".into());
    }
    if let Some(r) = &spec.runtime_class
        && (r.is_empty()
            || r.starts_with('-')
            || r.chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(c))))
    {
        return Err(format!(
            "runtime_class {r:?} is not the name of an OCI runtime (e.g. \"runsc\")"
        ));
    }
    Ok(())
}

/// The bytes of a memory size as written (`2G`, `512M`, `64m`, `1024k`, `1048576`), at least
/// 6 MiB (below that a container runtime refuses it).
pub fn memory_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("memory = {text:?} is not a size (e.g. \"2G\", \"512M\")");
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = t[digits.len()..].to_ascii_lowercase();
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes < 6 << 20 {
        return Err(format!(
            "memory = {text:?} is below 6M, the least a container can run in"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(image: &str) -> ContainerSpec {
        ContainerSpec {
            image: image.into(),
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn sizes_read_as_a_runtime_reads_them_and_odd_ones_are_refused() {
        assert_eq!(memory_bytes("2G").unwrap(), 2 << 30);
        assert_eq!(memory_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(memory_bytes("8388608").unwrap(), 8 << 20);
        for bad in ["", "2T", "-1G", "1M", "G", "2 G x"] {
            assert!(memory_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nothing_a_runtime_would_read_as_an_option_passes() {
        assert!(check_container(&spec("localhost/team:1")).is_ok());
        for bad in ["", "--privileged", "img name", "img;rm", "img\n"] {
            assert!(check_container(&spec(bad)).is_err(), "{bad:?}");
        }
        let mut s = spec("debian:12");
        s.runtime_class = Some("--privileged".into());
        assert!(check_container(&s).is_err());
        s.runtime_class = Some("runsc".into());
        s.runtime = Some("lxc".into());
        assert!(check_container(&s).is_err());
        s.runtime = Some("docker".into());
        s.cpus = Some("-1".into());
        assert!(check_container(&s).is_err());
        s.cpus = Some("1.5".into());
        s.pids = Some(0);
        assert!(check_container(&s).is_err());
        s.pids = Some(64);
        assert!(check_container(&s).is_ok());
    }
}
