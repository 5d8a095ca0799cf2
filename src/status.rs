//! What `handoff-init ctl status` shows: generations, pids, states, uptime, handoff counts, the
//! last STATUS= of each, and the listeners; as text for people or JSON for scripts.

use crate::handoff::Machine;
use crate::listen::Listener;
use crate::log::dur;
use std::time::Instant;

/// `store`: the fd store's (held, max).
pub fn text(
    m: &Machine,
    listeners: &[Listener],
    store: (usize, usize),
    started: Instant,
) -> String {
    let now = Instant::now();
    let mut s = format!(
        "handoff-init pid {}, up {}, handoffs: {} done, {} failed{}\n",
        std::process::id(),
        dur(now - started),
        m.handoffs_done,
        m.handoffs_failed,
        if m.watchdog_recoveries > 0 {
            format!(", watchdog recoveries: {}", m.watchdog_recoveries)
        } else {
            String::new()
        }
    );
    for (i, l) in listeners.iter().enumerate() {
        s.push_str(&format!(
            "listener {} {} (fd {})\n",
            l.name,
            printable(&l.url),
            3 + i
        ));
    }
    if store.1 > 0 {
        s.push_str(&format!("fd store: {} of {} held\n", store.0, store.1));
    }
    for g in m.generations() {
        let status = g
            .status
            .as_deref()
            .map_or(String::new(), |st| format!(" status: {}", printable(st)));
        let watchdog = match (g.watchdog, g.last_keepalive) {
            (Some(w), Some(k)) => {
                format!(" watchdog {} last keep-alive {} ago", dur(w), dur(now - k))
            }
            (Some(w), None) => format!(" watchdog {} no keep-alive yet", dur(w)),
            _ => String::new(),
        };
        let hung = if g.hung { " hung" } else { "" };
        s.push_str(&format!(
            "generation {} pid {} {}{hung} up {}{watchdog}{status}\n",
            g.id,
            g.main,
            g.state.name(),
            dur(now - g.started)
        ));
    }
    s
}

pub fn json(
    m: &Machine,
    listeners: &[Listener],
    store: (usize, usize),
    started: Instant,
) -> String {
    let now = Instant::now();
    let listeners: Vec<String> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "{{\"name\":{},\"url\":{},\"fd\":{}}}",
                str(&l.name),
                str(&l.url),
                3 + i
            )
        })
        .collect();
    let gens: Vec<String> = m
        .generations()
        .iter()
        .map(|g| {
            format!(
                "{{\"generation\":{},\"pid\":{},\"state\":\"{}\",\"started_by\":\"{}\",\"hung\":{},\"watchdog_ms\":{},\"last_keepalive_ms_ago\":{},\"uptime_ms\":{},\"status\":{}}}",
                g.id,
                g.main,
                g.state.name(),
                g.start.name(),
                g.hung,
                g.watchdog.map_or("null".into(), |w| w.as_millis().to_string()),
                g.last_keepalive.map_or("null".into(), |k| (now - k).as_millis().to_string()),
                (now - g.started).as_millis(),
                g.status.as_deref().map_or("null".to_string(), str)
            )
        })
        .collect();
    format!(
        "{{\"pid\":{},\"uptime_ms\":{},\"handoffs_done\":{},\"handoffs_failed\":{},\"watchdog_recoveries\":{},\"fdstore\":{{\"held\":{},\"max\":{}}},\"listeners\":[{}],\"generations\":[{}]}}\n",
        std::process::id(),
        (now - started).as_millis(),
        m.handoffs_done,
        m.handoffs_failed,
        m.watchdog_recoveries,
        store.0,
        store.1,
        listeners.join(","),
        gens.join(",")
    )
}

/// Text for an operator's terminal: control characters (ESC, BEL, CR, DEL, C1, …) that a service
/// put in STATUS= are shown as `\u{1b}` instead of being sent to the terminal raw.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// A JSON string literal.
pub fn str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::{Fact, ReadyKind, Settings};
    use std::time::Duration;

    #[test]
    fn text_has_no_control_characters() {
        assert_eq!(
            printable("a\u{1b}[31mb\u{7}\u{7f}\u{9b}é"),
            "a\\u{1b}[31mb\\u{7}\\u{7f}\\u{9b}é"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn shows_generations_and_counts() {
        let t = Instant::now();
        let mut m = Machine::new(Settings {
            ready: ReadyKind::Told,
            ready_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            stop_signal: 15,
            restart_on_failure: false,
            track: crate::config::Track::Main,
            watchdog: None,
            reload_signal: None,
        });
        m.start(t);
        m.handle(
            Fact::Spawned {
                generation: 1,
                pid: 42,
            },
            t,
        );
        m.handle(
            Fact::Status {
                generation: 1,
                text: "warming \"up\"".into(),
            },
            t,
        );
        let text = text(&m, &[], (1, 4), t);
        assert!(text.contains("fd store: 1 of 4 held"), "{text}");
        assert!(text.contains("handoffs: 0 done, 0 failed"), "{text}");
        assert!(text.contains("generation 1 pid 42 starting up"), "{text}");
        assert!(text.ends_with("status: warming \"up\"\n"), "{text}");
        let json = json(&m, &[], (1, 4), t);
        assert!(
            json.contains("\"fdstore\":{\"held\":1,\"max\":4}"),
            "{json}"
        );
        assert!(
            json.contains("\"generations\":[{\"generation\":1,\"pid\":42,\"state\":\"starting\""),
            "{json}"
        );
        assert!(json.contains("\"status\":\"warming \\\"up\\\"\""), "{json}");
    }
}
