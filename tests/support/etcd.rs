//! A real etcd (Debian's `etcd-server`, `/usr/bin/etcd`) on 127.0.0.1 random ports with a
//! temporary data dir, killed when dropped; and a small client to look at and change its keys
//! (as root once authentication is on).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, Permission, PutOptions, SortOrder, SortTarget};

use super::proc::Daemon;
use super::wait_for;

pub struct Etcd {
    /// `127.0.0.1:PORT`, the client address.
    pub addr: String,
    rt: tokio::runtime::Runtime,
    /// Root's password once [`Etcd::enable_auth`] turned authentication on.
    root_password: Option<String>,
    _daemon: Daemon,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Etcd {
    /// Start etcd and wait until it answers a read.
    pub fn start(log_dir: &Path) -> Etcd {
        Self::start_with(log_dir, &[])
    }

    /// [`Etcd::start`] with more command-line flags.
    pub fn start_with(log_dir: &Path, flags: &[&str]) -> Etcd {
        let data = tempfile::tempdir().expect("etcd data dir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new("etcd");
        cmd.args([
            "--name",
            "test",
            "--data-dir",
            data.path().to_str().expect("utf-8"),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("test={peer_url}"),
        ]);
        cmd.args(flags);
        let daemon = Daemon::spawn(cmd, &[], &log_dir.join("etcd.log"));
        let etcd = Etcd {
            addr: format!("127.0.0.1:{client}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            root_password: None,
            _daemon: daemon,
            _data: data,
        };
        wait_for("etcd answering", Duration::from_secs(120), || {
            etcd.try_keys("/").ok()
        });
        etcd
    }

    fn client(&self) -> Result<Client, etcd_client::Error> {
        let opts = self
            .root_password
            .as_ref()
            .map(|p| ConnectOptions::new().with_user("root", p.clone()));
        self.rt
            .block_on(Client::connect([format!("http://{}", self.addr)], opts))
    }

    /// Turn authentication on: a `root` user, and `user` with `password` allowed to read and
    /// write the keys under each of `prefixes` and nothing else.
    pub fn enable_auth(&mut self, user: &str, password: &str, prefixes: &[&str]) {
        let mut c = self.client().expect("etcd connect");
        let rt = &self.rt;
        rt.block_on(c.user_add("root", "root-password", None))
            .expect("user root");
        rt.block_on(c.user_grant_role("root", "root")).expect("root role");
        rt.block_on(c.role_add("fleet")).expect("role");
        for prefix in prefixes {
            rt.block_on(c.role_grant_permission("fleet", Permission::read_write(*prefix).with_prefix()))
                .expect("permission");
        }
        rt.block_on(c.user_add(user, password, None)).expect("user");
        rt.block_on(c.user_grant_role(user, "fleet")).expect("user role");
        rt.block_on(c.auth_enable()).expect("auth enable");
        self.root_password = Some("root-password".into());
    }

    fn try_keys(&self, prefix: &str) -> Result<Vec<String>, etcd_client::Error> {
        let mut c = self.client()?;
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let r = self.rt.block_on(c.get(prefix, Some(opts)))?;
        Ok(r.kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect())
    }

    /// The keys under `prefix`, oldest first.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.try_keys(prefix).expect("etcd get")
    }

    /// Put `key` attached to a new lease of `ttl` seconds (kept alive by no one).
    pub fn put_leased(&self, key: &str, ttl: i64) {
        let mut c = self.client().expect("etcd connect");
        let lease = self.rt.block_on(c.lease_grant(ttl, None)).expect("lease");
        let opts = PutOptions::new().with_lease(lease.id());
        self.rt
            .block_on(c.put(key, "test", Some(opts)))
            .expect("etcd put");
    }

    pub fn delete(&self, key: &str) {
        let mut c = self.client().expect("etcd connect");
        self.rt.block_on(c.delete(key, None)).expect("etcd delete");
    }
}
