//! What a user's text may be where it lands in frr.conf.
//!
//! FRR reads its configuration a line at a time and splits each line on spaces, tabs, CR and LF;
//! a line whose first word starts with `!` or `#` is a comment. So a value that reaches frr.conf
//! stays inside its slot only if it is one word of printable ASCII: a newline would start a
//! command of the writer's choosing (a BGPPeer password of `x\n neighbor …` adds a neighbor),
//! a space would add words to ours. On top, each slot has the limits FRR and the kernel put on
//! it, so a value FRR would refuse is refused here, by name, before anything is applied.
//!
//! The same rules back the CRD schemas (`crate::api`) and the renderer's last check
//! (`crate::bgp::guard`): three layers, none trusted alone.

/// The CRD schema pattern for one FRR word: printable ASCII, no space.
pub const WORD_PATTERN: &str = "^[!-~]*$";
/// The kernel's TCP-MD5 key limit (`TCP_MD5SIG_MAXKEYLEN`): a longer password is cut or refused
/// by the socket call, and the session never comes up.
pub const MAX_PASSWORD: usize = 80;
/// A network device name (interface or VRF): `IFNAMSIZ` is 16 with the terminating NUL.
pub const MAX_DEVICE_NAME: usize = 15;
/// bfdd keeps profile names in a 64-byte buffer with its terminating NUL.
pub const MAX_BFD_PROFILE_NAME: usize = 63;
/// Linux's `HOST_NAME_MAX`; FRR hands `hostname` to the system's limits.
pub const MAX_HOSTNAME: usize = 63;

/// One FRR word: at least one byte, each printable ASCII other than space.
pub fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Why `s` is not one FRR word of at most `max` bytes; `shown` says whether the value may be
/// quoted in the message (never for a password).
fn word(s: &str, max: usize, shown: bool) -> Result<(), String> {
    let quoted = if shown { format!("{:?} ", clip(s)) } else { String::new() };
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        let what = match c {
            ' ' => "a space".to_string(),
            '\t' | '\n' | '\r' => format!("{c:?} (a line or word break)"),
            c if c.is_control() => format!("the control character U+{:04X}", c as u32),
            c => format!("{c:?} (not ASCII)"),
        };
        return Err(format!(
            "{quoted}contains {what}: FRR reads its configuration as words of printable ASCII, so it would not stay one value"
        ));
    }
    if s.len() > max {
        return Err(format!("{quoted}is {} bytes long, the limit is {max}", s.len()));
    }
    Ok(())
}

/// At most 40 characters of a value for a message, so a hostile megabyte is not repeated.
fn clip(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// A BGP session's TCP-MD5 password. The message never quotes it: it is a secret.
pub fn password(s: &str) -> Result<(), String> {
    word(s, MAX_PASSWORD, false).map_err(|e| format!("the password {e}"))
}

/// An interface or VRF name, as the kernel accepts one (no `/`, no `:`, not `.` or `..`).
pub fn device_name(s: &str) -> Result<(), String> {
    word(s, MAX_DEVICE_NAME, true)?;
    if s == "." || s == ".." || s.contains(['/', ':']) {
        return Err(format!("{:?} is not a valid Linux device name (no '/' or ':', not '.' or '..')", s));
    }
    Ok(())
}

/// A BFD profile's name, as bfdd stores it.
pub fn bfd_profile_name(s: &str) -> Result<(), String> {
    word(s, MAX_BFD_PROFILE_NAME, true)
}

/// The `hostname` for a node: its name when FRR takes it as it is (a letter first, then
/// letters, digits, `.`, `-`; at most 63 bytes), otherwise a name derived from it that FRR
/// takes. Node names are DNS subdomains of up to 253 bytes that may start with a digit, which
/// FRR's `hostname` refuses; the hostname is only a label in FRR's prompt and logs, so a
/// refused one must not cost the node its BGP configuration.
pub fn hostname(node: &str) -> String {
    let kept: String = node.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
    let named =
        if kept.starts_with(|c: char| c.is_ascii_alphabetic()) { kept } else { format!("node-{kept}") };
    let mut name = named;
    name.truncate(MAX_HOSTNAME);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_printable_ascii_without_spaces() {
        assert!(is_word("x!#\"'`~{}[]?\\"));
        for bad in ["", "a b", "a\nb", "a\rb", "a\tb", "a\0b", "é", "\u{7f}"] {
            assert!(!is_word(bad), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_refused_without_being_quoted() {
        let e = password("s3cret\n neighbor 198.51.100.66 remote-as 65666").unwrap_err();
        assert!(e.contains("line or word break"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("198.51.100.66"), "{e}");
        assert!(password(&"k".repeat(80)).is_ok());
        let e = password(&"k".repeat(81)).unwrap_err();
        assert!(e.contains("81 bytes") && e.contains("80") && !e.contains("kkk"), "{e}");
        assert!(password("").is_err());
        assert!(password("with space").unwrap_err().contains("a space"));
    }

    #[test]
    fn device_names_follow_the_kernel() {
        assert!(device_name("eth0").is_ok());
        assert!(device_name("red-vrf_1.2").is_ok());
        assert!(device_name("abcdefghijklmnop").unwrap_err().contains("limit is 15"));
        for bad in ["a/b", "a:b", ".", "..", "red\nexit", "red vrf"] {
            assert!(device_name(bad).is_err(), "{bad:?}");
        }
        assert!(device_name("x\u{1b}[2J").unwrap_err().contains("U+001B"));
    }

    #[test]
    fn hostnames_are_ones_frr_takes_whatever_the_node_is_called() {
        assert_eq!(hostname("node1"), "node1");
        assert_eq!(hostname("10-0-0-1.example"), "node-10-0-0-1.example");
        assert_eq!(hostname("n1\n!\nrouter bgp 1"), "n1routerbgp1");
        assert_eq!(hostname(""), "node-");
        let long = hostname(&format!("a{}", "b".repeat(300)));
        assert_eq!(long.len(), 63);
        for name in ["x", "1", "é", "a b", &"z".repeat(253)] {
            let h = hostname(name);
            assert!(
                is_word(&h) && h.len() <= MAX_HOSTNAME && h.starts_with(|c: char| c.is_ascii_alphabetic())
            );
        }
    }

    #[test]
    fn long_values_are_clipped_in_messages() {
        let e = bfd_profile_name(&format!("{}\n", "p".repeat(10_000))).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }
}
