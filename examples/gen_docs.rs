//! Writes dewy's man pages and shell completions from its clap definitions, for the packages:
//! `cargo run --example gen_docs -- OUTDIR` fills `OUTDIR/man/` (dewy.1, one dewy-SUBCOMMAND.1
//! per subcommand, dewy-deployer.8, dewy-watcher.8, dewy-proxy.8) and `OUTDIR/completions/`
//! (bash, zsh and fish for `dewy`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use dewy::cli::args::{Cli, DaemonArgs};

/// The daemons and the one line of their NAME section.
const DAEMONS: [(&str, &str); 3] = [
    ("dewy-deployer", "dewy's deployer of one app (dewy@.service)"),
    (
        "dewy-watcher",
        "dewy's registry watcher of one app (dewy-watcher@.service)",
    ),
    (
        "dewy-proxy",
        "dewy's reverse proxy of one app in container mode (dewy-proxy@.service)",
    ),
];

fn write_man(man: clap_mangen::Man, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join(man.get_filename());
    let mut out = Vec::new();
    man.render(&mut out)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `dewy.1` and one page per subcommand, named `dewy-SUBCOMMAND[-SUBSUBCOMMAND].1`.
fn user_pages(
    cmd: &clap::Command,
    prefix: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let name = if prefix.is_empty() {
        cmd.get_name().to_string()
    } else {
        format!("{prefix}-{}", cmd.get_name())
    };
    // clap takes `&'static str` names without its `string` feature; this program is short-lived.
    let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
    let page = cmd.clone().name(leaked).bin_name(name.replace('-', " "));
    written.push(write_man(
        clap_mangen::Man::new(page).section("1").manual("dewy"),
        dir,
    )?);
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        user_pages(sub, &name, dir, written)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: gen_docs OUTDIR")?;
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    for d in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut written = Vec::new();
    let mut cli = Cli::command();
    cli.build();
    user_pages(&cli, "", &man_dir, &mut written)?;
    for (name, about) in DAEMONS {
        let cmd = DaemonArgs::command().name(name).bin_name(name).about(about);
        written.push(write_man(
            clap_mangen::Man::new(cmd).section("8").manual("dewy"),
            &man_dir,
        )?);
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut Cli::command(), "dewy", &comp_dir)
            .with_context(|| format!("writing the {shell} completion"))?;
        written.push(path);
    }
    for p in &written {
        println!("{}", p.display());
    }
    Ok(())
}
