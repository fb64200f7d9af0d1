//! Extra `docker run` options of container mode (`dewy container … -- -e A=1 --memory 256m`):
//! the supported ones are parsed into what the Engine API needs; the ones that would undo
//! dewy's management or the host's protection are refused with the reason.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

/// Parsed extra options, applied to every replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunOptions {
    /// `-e/--env KEY=VALUE` (a bare `KEY` takes dewy's own value, as docker does).
    pub env: Vec<String>,
    /// `--env-file FILE`, read when a container is created.
    pub env_files: Vec<String>,
    /// `-v/--volume SRC:DST[:OPTS]`.
    pub volumes: Vec<String>,
    /// `--tmpfs PATH[:OPTS]`.
    pub tmpfs: Vec<String>,
    /// `-m/--memory` in bytes.
    pub memory: Option<i64>,
    /// `--cpus` as nano-CPUs.
    pub nano_cpus: Option<i64>,
    /// `--network/--net`.
    pub network: Option<String>,
    /// `--entrypoint`.
    pub entrypoint: Option<String>,
    /// `-w/--workdir`.
    pub workdir: Option<String>,
    /// `-l/--label KEY=VALUE` (never `dewy.*`).
    pub labels: BTreeMap<String, String>,
    /// `-u/--user`; dewy's own uid:gid when absent.
    pub user: Option<String>,
    /// `--restart` policy (`no`, `on-failure[:N]`, `always`, `unless-stopped`).
    pub restart: Option<String>,
    /// `--name`: the base of the container names instead of the app name.
    pub name: Option<String>,
    /// `-h/--hostname`.
    pub hostname: Option<String>,
    /// `--add-host NAME:IP`.
    pub add_hosts: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--init`.
    pub init: bool,
    /// `--stop-timeout` seconds.
    pub stop_timeout: Option<i64>,
}

/// Options refused, with why.
const REFUSED: &[(&[&str], &str)] = &[
    (&["--privileged"], "gives the container full access to the host"),
    (
        &["--pid"],
        "shares a process namespace (e.g. the host's) with the container",
    ),
    (
        &["--ipc"],
        "shares an IPC namespace (e.g. the host's) with the container",
    ),
    (&["--uts"], "shares the host's UTS namespace"),
    (&["--cap-add"], "adds kernel capabilities to the container"),
    (
        &["--security-opt"],
        "can turn off seccomp, AppArmor or SELinux confinement",
    ),
    (&["--device"], "gives the container a host device"),
    (
        &["--device-cgroup-rule"],
        "gives the container access to host devices",
    ),
    (&["--userns"], "can turn off user-namespace remapping"),
    (&["--cgroupns"], "can share the host's cgroup namespace"),
    (
        &["--cgroup-parent"],
        "moves the container out of the engine's cgroup",
    ),
    (
        &["--publish", "-p"],
        "dewy publishes the container ports itself, on 127.0.0.1 only, behind its proxy",
    ),
    (
        &["--publish-all", "-P"],
        "publishes the exposed ports on every interface, around dewy's proxy",
    ),
    (&["--detach", "-d"], "dewy runs the containers detached itself"),
    (&["--tty", "-t"], "a container run by dewy has no terminal"),
    (
        &["--interactive", "-i"],
        "a container run by dewy has no standard input",
    ),
    (
        &["--rm"],
        "dewy removes its containers itself (and keeps failed ones out of the proxy)",
    ),
    (
        &["--label-file"],
        "labels from a file could override dewy's own labels (use --label)",
    ),
    (&["--volumes-from"], "mounts another container's volumes"),
];

/// Options that take a value, by their long and short spelling.
const WITH_VALUE: &[(&str, Option<&str>)] = &[
    ("--env", Some("-e")),
    ("--env-file", None),
    ("--volume", Some("-v")),
    ("--tmpfs", None),
    ("--memory", Some("-m")),
    ("--cpus", None),
    ("--network", None),
    ("--net", None),
    ("--entrypoint", None),
    ("--workdir", Some("-w")),
    ("--label", Some("-l")),
    ("--user", Some("-u")),
    ("--restart", None),
    ("--name", None),
    ("--hostname", Some("-h")),
    ("--add-host", None),
    ("--stop-timeout", None),
];

impl RunOptions {
    /// Parse the words after `--` (or `run-options = [...]`).
    pub fn parse(words: &[String]) -> anyhow::Result<RunOptions> {
        let mut o = RunOptions::default();
        let mut i = 0;
        while i < words.len() {
            let word = words[i].trim();
            i += 1;
            if word.is_empty() {
                continue;
            }
            if !word.starts_with('-') {
                bail!(
                    "{word:?} is not an option; the image command goes in cmd = [...] (--cmd), not after --"
                );
            }
            refuse(word)?;
            let (name, inline) = split(word);
            match name.as_str() {
                "--read-only" => {
                    o.read_only = true;
                    continue;
                }
                "--init" => {
                    o.init = true;
                    continue;
                }
                _ => {}
            }
            let Some((long, _)) = WITH_VALUE
                .iter()
                .find(|(l, s)| *l == name || s.is_some_and(|s| s == name))
            else {
                bail!(
                    "option {word} is not supported in container mode (supported: -e, --env-file, -v, --tmpfs, -m, --cpus, --network, --entrypoint, -w, -l, -u, --restart, --name, -h, --add-host, --read-only, --init, --stop-timeout)"
                );
            };
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = words
                        .get(i)
                        .ok_or_else(|| anyhow!("option {word} needs a value"))?;
                    i += 1;
                    v.clone()
                }
            };
            o.set(long, value).with_context(|| format!("option {word}"))?;
        }
        Ok(o)
    }

    fn set(&mut self, long: &str, v: String) -> anyhow::Result<()> {
        match long {
            "--env" => self.env.push(v),
            "--env-file" => self.env_files.push(v),
            "--volume" => self.volumes.push(v),
            "--tmpfs" => self.tmpfs.push(v),
            "--memory" => self.memory = Some(parse_bytes(&v)?),
            "--cpus" => {
                let cpus: f64 = v.parse().map_err(|_| anyhow!("{v:?} is not a number of CPUs"))?;
                if !(cpus > 0.0 && cpus < 4096.0) {
                    bail!("{v:?} is not a number of CPUs");
                }
                self.nano_cpus = Some((cpus * 1e9) as i64);
            }
            "--network" | "--net" => {
                if v == "host" || v.starts_with("container:") {
                    bail!("network {v:?} shares another network namespace, around dewy's proxy and its 127.0.0.1-only ports");
                }
                self.network = Some(v)
            }
            "--entrypoint" => self.entrypoint = Some(v),
            "--workdir" => self.workdir = Some(v),
            "--label" => {
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                if k.starts_with("dewy.") {
                    bail!("labels starting with dewy. are dewy's own");
                }
                self.labels.insert(k.to_string(), val.to_string());
            }
            "--user" => self.user = Some(v),
            "--restart" => {
                // Checked here so that `dewy config check` finds a bad policy, not each deploy.
                restart_parts(&v)?;
                self.restart = Some(v)
            }
            "--name" => {
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                    bail!("{v:?} is not a container name (letters, digits, '-', '_', '.')");
                }
                self.name = Some(v)
            }
            "--hostname" => self.hostname = Some(v),
            "--add-host" => self.add_hosts.push(v),
            "--stop-timeout" => {
                self.stop_timeout = Some(
                    v.parse()
                        .map_err(|_| anyhow!("{v:?} is not a number of seconds"))?,
                )
            }
            _ => bail!("unsupported"),
        }
        Ok(())
    }

    /// Environment from `env` and the env files, in order.
    pub fn environment(&self) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for file in &self.env_files {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading env file {file}"))?;
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(expand_bare(line));
            }
        }
        out.extend(self.env.iter().map(|e| expand_bare(e)));
        Ok(out.into_iter().flatten().collect())
    }
}

/// `KEY` alone takes dewy's own value (left out when dewy has none), as `docker run -e KEY` does.
fn expand_bare(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// `--opt=value` → (`--opt`, value); `-eA=1` → (`-e`, `A=1`); `-e` → (`-e`, None).
fn split(word: &str) -> (String, Option<String>) {
    if let Some(rest) = word.strip_prefix("--") {
        return match rest.split_once('=') {
            Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
            None => (word.to_string(), None),
        };
    }
    let mut chars = word.chars();
    chars.next();
    match chars.next() {
        Some(c) => {
            let rest: String = chars.collect();
            let rest = rest.strip_prefix('=').map(str::to_string).unwrap_or(rest);
            (format!("-{c}"), (!rest.is_empty()).then_some(rest))
        }
        None => (word.to_string(), None),
    }
}

fn refuse(word: &str) -> anyhow::Result<()> {
    let (name, _) = split(word);
    // A bundle of short flags (`-dit`) is refused when any of them is.
    let takes_value = WITH_VALUE.iter().any(|(_, s)| *s == Some(name.as_str()));
    let shorts: Vec<String> = if !word.starts_with("--") && word.len() > 2 && !takes_value {
        word.chars().skip(1).map(|c| format!("-{c}")).collect()
    } else {
        vec![name.clone()]
    };
    for candidate in std::iter::once(&name).chain(shorts.iter()) {
        if let Some((_, why)) = REFUSED
            .iter()
            .find(|(names, _)| names.contains(&candidate.as_str()))
        {
            bail!("option {word} is refused: it {why}");
        }
    }
    Ok(())
}

/// `512`, `64k`, `256m`, `1g` (docker's units: powers of 1024).
fn parse_bytes(v: &str) -> anyhow::Result<i64> {
    let t = v.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow!("{v:?} is not a size (e.g. 256m, 1g)"))?;
    n.checked_mul(mult)
        .filter(|b| *b >= 6 << 20)
        .ok_or_else(|| anyhow!("{v:?}: the memory limit must be at least 6m"))
}

/// A `--restart` policy split into its name and retry count, checked: `no`, `on-failure[:N]`,
/// `always` or `unless-stopped`.
pub fn restart_parts(v: &str) -> anyhow::Result<(&str, Option<i64>)> {
    let (name, count) = match v.split_once(':') {
        Some((n, c)) => (
            n,
            Some(
                c.parse::<i64>()
                    .map_err(|_| anyhow!("restart {v:?}: bad count"))?,
            ),
        ),
        None => (v, None),
    };
    if !["no", "on-failure", "always", "unless-stopped"].contains(&name) {
        bail!("restart {v:?}: use no, on-failure[:N], always or unless-stopped");
    }
    Ok((name, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> anyhow::Result<RunOptions> {
        RunOptions::parse(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn supported_options() {
        let o = parse(&[
            "-e",
            "A=1",
            "--env=B=2",
            "-eC=3",
            "-v",
            "/srv/data:/data:ro",
            "--memory",
            "256m",
            "--cpus=0.5",
            "--network",
            "backend",
            "--entrypoint",
            "/bin/app",
            "-w",
            "/work",
            "-l",
            "traefik.enable=true",
            "--user=1000:1000",
            "--restart",
            "on-failure:3",
            "--read-only",
            "--name",
            "web",
        ])
        .unwrap();
        assert_eq!(o.env, ["A=1", "B=2", "C=3"]);
        assert_eq!(o.volumes, ["/srv/data:/data:ro"]);
        assert_eq!(o.memory, Some(256 << 20));
        assert_eq!(o.nano_cpus, Some(500_000_000));
        assert_eq!(o.network.as_deref(), Some("backend"));
        assert_eq!(o.entrypoint.as_deref(), Some("/bin/app"));
        assert_eq!(o.workdir.as_deref(), Some("/work"));
        assert_eq!(o.labels.get("traefik.enable").map(String::as_str), Some("true"));
        assert_eq!(o.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.restart.as_deref(), Some("on-failure:3"));
        assert!(o.read_only);
        assert_eq!(o.name.as_deref(), Some("web"));
        let err = RunOptions::parse(&["--restart".to_string(), "sometimes".to_string()])
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
            .unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
    }

    #[test]
    fn dangerous_options_are_refused_with_the_reason() {
        for (words, why) in [
            (&["--privileged"][..], "full access to the host"),
            (&["--pid=host"], "process namespace"),
            (&["--cap-add", "SYS_ADMIN"], "capabilities"),
            (&["--security-opt", "seccomp=unconfined"], "seccomp"),
            (&["--device", "/dev/sda"], "host device"),
            (&["--userns=host"], "user-namespace"),
            (&["--cgroupns", "host"], "cgroup namespace"),
            (&["-p", "80:80"], "127.0.0.1 only"),
            (&["--publish=80:80"], "127.0.0.1 only"),
            (&["-dit"], "detached"),
            (&["-t"], "terminal"),
            (&["--interactive"], "standard input"),
            (&["-l", "dewy.app=other"], "dewy's own"),
            (&["--network", "host"], "network namespace"),
        ] {
            let err = format!("{:#}", parse(words).unwrap_err());
            assert!(err.contains(why), "{words:?}: {err}");
        }
        let err = format!("{:#}", parse(&["--oom-kill-disable"]).unwrap_err());
        assert!(err.contains("not supported"), "{err}");
        let err = format!("{:#}", parse(&["/bin/sh"]).unwrap_err());
        assert!(err.contains("cmd"), "{err}");
        let err = format!("{:#}", parse(&["-e"]).unwrap_err());
        assert!(err.contains("needs a value"), "{err}");
    }

    #[test]
    fn env_files_and_bare_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("app.env");
        std::fs::write(&f, "# comment\nX=1\n\nDEWY_RUN_OPTIONS_SURELY_UNSET\n").unwrap();
        let o = parse(&["--env-file", f.to_str().unwrap(), "-e", "Y=2"]).unwrap();
        assert_eq!(o.environment().unwrap(), ["X=1", "Y=2"]);
        let o = parse(&["--env-file", "/nonexistent/app.env"]).unwrap();
        assert!(format!("{:#}", o.environment().unwrap_err()).contains("/nonexistent/app.env"));
    }
}
