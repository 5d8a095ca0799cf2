//! The environment switches of tini and dumb-init, so an image that sets them keeps its meaning
//! when its ENTRYPOINT changes to handoff-init. What each does there (tini.c `parse_env`,
//! dumb-init.c `parse_command`) and here:
//!
//! | variable | tini / dumb-init | here |
//! |---|---|---|
//! | `DUMB_INIT_SETSID=0` | as `-c` | as `-c`: signals go to the command only, no job-control rewrites |
//! | `DUMB_INIT_DEBUG=1` | as `-v` (debug output) | debug level (as `-vv`) |
//! | `TINI_VERBOSITY=N` | 0 fatal, 1 warnings (default), 2 info, 3 debug | the same scale; `-v`/`-q` move from it |
//! | `TINI_SUBREAPER` (any value) | register as subreaper | accepted: always done when not PID 1 |
//! | `TINI_KILL_PROCESS_GROUP` (any value) | as `-g` | accepted: the group is the default |
//!
//! Only the exact values dumb-init acts on count (`DUMB_INIT_SETSID` only when "0",
//! `DUMB_INIT_DEBUG` only when "1"), as there. `TINI_VERBOSITY` that is not a number is refused
//! (tini reads it with atoi(3), so a typo silently means 0).

use crate::cli::Cli;
use crate::log::Level;

/// Reads the peers' switches through `get` (the environment) into `cli`. `-v`/`-q` move from the
/// level set here; `DUMB_INIT_SETSID=0` acts as `-c` whatever the command line says, as there.
pub fn from_env(cli: &mut Cli, get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if get("DUMB_INIT_SETSID").as_deref() == Some("0") {
        cli.single_child = true;
    }
    if let Some(v) = get("TINI_VERBOSITY") {
        let n: u8 = v
            .trim()
            .parse()
            .map_err(|_| format!("invalid TINI_VERBOSITY '{v}': expected 0 to 4"))?;
        cli.base_level = Some(match n {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            3 => Level::Debug,
            _ => Level::Trace,
        });
    }
    if get("DUMB_INIT_DEBUG").as_deref() == Some("1") {
        cli.base_level = cli.base_level.max(Some(Level::Debug));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Cli, String> {
        let mut cli = Cli::default();
        from_env(&mut cli, |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })?;
        Ok(cli)
    }

    #[test]
    fn dumb_init_switches_take_only_their_exact_values() {
        assert!(with(&[("DUMB_INIT_SETSID", "0")]).unwrap().single_child);
        assert!(!with(&[("DUMB_INIT_SETSID", "1")]).unwrap().single_child);
        assert!(!with(&[("DUMB_INIT_SETSID", "")]).unwrap().single_child);
        let debug = with(&[("DUMB_INIT_DEBUG", "1")]).unwrap();
        assert_eq!(debug.base_level, Some(Level::Debug));
        assert_eq!(
            with(&[("DUMB_INIT_DEBUG", "yes")]).unwrap().base_level,
            None
        );
    }

    #[test]
    fn tini_verbosity_scale() {
        let level = |v: &str| with(&[("TINI_VERBOSITY", v)]).unwrap().base_level;
        assert_eq!(level("0"), Some(Level::Error));
        assert_eq!(level("1"), Some(Level::Warn));
        assert_eq!(level("2"), Some(Level::Info));
        assert_eq!(level("3"), Some(Level::Debug));
        assert_eq!(level("9"), Some(Level::Trace));
        assert!(
            with(&[("TINI_VERBOSITY", "loud")])
                .unwrap_err()
                .contains("TINI_VERBOSITY")
        );
        // The louder of the two wins.
        let both = with(&[("TINI_VERBOSITY", "0"), ("DUMB_INIT_DEBUG", "1")]).unwrap();
        assert_eq!(both.base_level, Some(Level::Debug));
    }

    #[test]
    fn tini_group_and_subreaper_change_nothing() {
        let cli = with(&[("TINI_SUBREAPER", ""), ("TINI_KILL_PROCESS_GROUP", "1")]).unwrap();
        assert!(!cli.single_child);
        assert_eq!(cli.base_level, None);
    }
}
